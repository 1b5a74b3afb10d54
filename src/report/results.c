/* results.json and results.csv of a robustness sweep: everything a report
 * needs, so a report never recomputes a metric. Written atomically. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/data.h"
#include "report.h"

/* The window that mapped modality units (HU) to the pixels, so every eps can be read in
 * both units: [center, width]. */
static void add_window(cJSON *root, const Dataset *d) {
  if (!d || !(d->window.width > 0)) return;
  const double w[2] = {d->window.center, d->window.width};
  cJSON_AddItemToObject(root, "window", cJSON_CreateDoubleArray(w, 2));
}

/* path written through a temporary file and a rename */
static Status write_atomic(const char *path, const char *text, MrError *err) {
  return file_write_all(path, text, strlen(text), err);
}

void report_text_add(ReportText *t, const char *fmt, ...) {
  while (!t->failed) {
    va_list ap;
    va_start(ap, fmt);
    const int need = t->buf ? vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap) : -1;
    va_end(ap);
    if (need >= 0 && t->len + (size_t)need < t->cap) {
      t->len += (size_t)need;
      return;
    }
    const size_t cap = t->cap * 2 + (need > 0 ? (size_t)need : 0) + 1024;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
      t->failed = 1;
      return;
    }
    t->buf = grown, t->cap = cap;
  }
}

void report_text_field(ReportText *t, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    report_text_add(t, "%s", s);
    return;
  }
  report_text_add(t, "\"");
  for (; *s; s++) report_text_add(t, *s == '"' ? "\"\"" : "%c", *s);
  report_text_add(t, "\"");
}

Status report_text_write(ReportText *t, const char *dir, const char *name, MrError *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  Status s = t->buf && !t->failed
                 ? write_atomic(path, t->buf, err)
                 : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory writing %s", path);
  free(t->buf);
  memset(t, 0, sizeof *t);
  return s;
}

void training_summary(const char *record, char *out, size_t n) {
  cJSON *r = record[0] ? cJSON_Parse(record) : NULL;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "adversarial");
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(a, "kind");
  const cJSON *eps = cJSON_GetObjectItemCaseSensitive(a, "eps");
  if (cJSON_IsString(kind) && cJSON_IsNumber(eps))
    snprintf(out, n, "%s eps %g", kind->valuestring, eps->valuedouble);
  else
    snprintf(out, n, "%s", r ? "standard" : "unknown");
  cJSON_Delete(r);
}

void report_add_training(cJSON *o, const char *record) {
  cJSON *parsed = record[0] ? cJSON_Parse(record) : NULL;
  if (parsed)
    cJSON_AddItemToObject(o, "training", parsed);
  else
    cJSON_AddStringToObject(o, "training", record);
}

Status report_write_json(const char *dir, const char *name, const cJSON *root, MrError *err) {
  char *text = cJSON_Print(root), path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  Status s = text ? write_atomic(path, text, err)
                  : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory writing %s", path);
  free(text);
  return s;
}

Status report_make_dir(const char *dir, const char *sub, MrError *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    return mr_error_set(err, STATUS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  return STATUS_OK;
}

void json_add_number(cJSON *o, const char *key, double v) {
  if (isfinite(v))
    cJSON_AddNumberToObject(o, key, v);
  else
    cJSON_AddNullToObject(o, key);
}

static const char *target_name(TargetMode t) {
  return t == TARGET_NONE ? "none" : t == TARGET_CLASS ? "class" : "least-likely";
}

static void add_confusion(cJSON *o, const int *confusion, int k) {
  cJSON *rows = cJSON_AddArrayToObject(o, "confusion");
  for (int t = 0; t < k; t++)
    cJSON_AddItemToArray(rows, cJSON_CreateIntArray(confusion + t * k, k));
}

/* Per-class recall (sensitivity) and specificity from a confusion matrix. */
static void add_per_class(cJSON *o, const int *confusion, int k) {
  cJSON *sens = cJSON_AddArrayToObject(o, "sensitivity");
  cJSON *spec = cJSON_AddArrayToObject(o, "specificity");
  for (int c = 0; c < k; c++) {
    double se, sp;
    confusion_rates(confusion, k, c, &se, &sp);
    cJSON_AddItemToArray(sens, se >= 0 ? cJSON_CreateNumber(se) : cJSON_CreateNull());
    cJSON_AddItemToArray(spec, sp >= 0 ? cJSON_CreateNumber(sp) : cJSON_CreateNull());
  }
}

/* A row per image: file, true class, clean prediction, and its prediction
 * under every attack and eps. */
static Status write_images_csv(const SweepResult *r, const Dataset *d, const char *dir,
                               MrError *err) {
  ReportText csv = {0};
  report_text_add(&csv, "file,id,true,clean_pred,clean_confidence");
  for (int j = 0; j < r->n_rows; j++)
    report_text_add(&csv, ",%s@%g,%s@%g_confidence", r->rows[j].attack, r->rows[j].eps,
                    r->rows[j].attack, r->rows[j].eps);
  report_text_add(&csv, "\n");
  for (int i = 0; i < r->n; i++) {
    char id[64];
    report_text_field(&csv, d ? dataset_image_id(d, i, id, sizeof id) : "");
    report_text_add(&csv, ",%s,", d ? dataset_image_hash(d, i, id, sizeof id) : "");
    report_text_field(&csv, d && d->labels[i] >= 0 ? sweep_class_name(r, d->labels[i]) : "");
    report_text_add(&csv, ",");
    report_text_field(&csv, sweep_class_name(r, r->clean_pred[i]));
    report_text_add(&csv, ",%.6f", r->clean_confidence[i]);
    for (int j = 0; j < r->n_rows; j++) {
      report_text_add(&csv, ",");
      report_text_field(&csv, sweep_class_name(r, r->rows[j].pred[i]));
      report_text_add(&csv, ",%.6f", r->rows[j].pred_confidence[i]);
    }
    report_text_add(&csv, "\n");
  }
  return report_text_write(&csv, dir, "images.csv", err);
}

Status sweep_write(const SweepResult *r, const Dataset *d, const char *dir, const char *model,
                   const char *data, const char *split, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "split", split);
  cJSON_AddNumberToObject(root, "n", r->n);
  cJSON_AddNumberToObject(root, "classes", r->k);
  cJSON *names = cJSON_AddArrayToObject(root, "class_names");
  for (int c = 0; c < r->k; c++)
    cJSON_AddItemToArray(names, cJSON_CreateString(sweep_class_name(r, c)));
  cJSON_AddNumberToObject(root, "bits", d ? d->bits : 0);
  add_window(root, d);
  cJSON_AddNumberToObject(root, "clean_accuracy", r->clean_accuracy);
  cJSON_AddNumberToObject(root, "clean_balanced_accuracy", r->clean_balanced_accuracy);
  json_add_number(root, "clean_auc", r->clean_auc >= 0 ? r->clean_auc : NAN);
  add_confusion(root, r->clean_confusion, r->k);
  add_per_class(root, r->clean_confusion, r->k);
  json_add_number(root, "balanced_halving_eps", r->halving_eps);
  cJSON_AddBoolToObject(root, "eps_carried", r->carried);
  cJSON_AddStringToObject(root, "majority_class", sweep_class_name(r, r->majority_class));
  cJSON_AddNumberToObject(root, "majority_share", r->majority_share);
  if (r->positive >= 0) {
    cJSON_AddStringToObject(root, "positive_class", sweep_class_name(r, r->positive));
    cJSON_AddNumberToObject(root, "positives", r->positives);
    cJSON_AddNumberToObject(root, "clean_detected", r->clean_detected);
  }
  if (r->volumes) {
    cJSON_AddNumberToObject(root, "volumes", r->volumes);
    cJSON_AddNumberToObject(root, "volumes_labelled", r->volumes_labelled);
    if (r->volumes_labelled)
      cJSON_AddNumberToObject(root, "clean_volume_accuracy",
                              (double)r->clean_volume_correct / r->volumes_labelled);
  }
  report_add_training(root, r->training);
  cJSON *rows = cJSON_AddArrayToObject(root, "rows");
  for (int i = 0; i < r->n_rows; i++) {
    const SweepRow *w = &r->rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "attack", w->attack);
    cJSON_AddStringToObject(o, "norm", w->norm == NORM_LINF ? "linf" : "l2");
    cJSON_AddNumberToObject(o, "eps", w->eps);
    cJSON_AddStringToObject(o, "target", target_name(w->target));
    cJSON_AddNumberToObject(o, "accuracy", w->accuracy);
    cJSON_AddNumberToObject(o, "balanced_accuracy", w->balanced_accuracy);
    json_add_number(o, "auc", w->auc >= 0 ? w->auc : NAN);
    cJSON_AddNumberToObject(o, "drop_pct", w->drop_pct);
    cJSON_AddNumberToObject(o, "success_rate", w->success_rate);
    if (r->positive >= 0) {
      cJSON_AddNumberToObject(o, "positives_detected", w->positives_detected);
      cJSON_AddNumberToObject(o, "missed", w->missed);
    }
    if (w->confusion) {
      add_confusion(o, w->confusion, r->k);
      add_per_class(o, w->confusion, r->k);
    }
    json_add_number(o, "mean_linf", w->linf);
    json_add_number(o, "mean_l2", w->l2);
    json_add_number(o, "mean_mse", w->mse);
    json_add_number(o, "mean_ssim", w->ssim);
    json_add_number(o, "mean_psnr", w->psnr);
    json_add_number(o, "mean_confidence", w->confidence);
    json_add_number(o, "seconds", w->seconds);
    cJSON_AddNumberToObject(o, "carried", w->carried);
    if (r->volumes_labelled)
      cJSON_AddNumberToObject(o, "volume_accuracy",
                              (double)w->volume_correct / r->volumes_labelled);
    cJSON_AddItemToArray(rows, o);
  }
  cJSON *noise = cJSON_AddArrayToObject(root, "noise");
  for (int i = 0; i < r->n_noise; i++) {
    const NoiseRow *nr = &r->noise[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "noise", noise_name(nr->kind));
    cJSON_AddNumberToObject(o, "matched_eps", nr->eps);
    cJSON_AddNumberToObject(o, "level", nr->level);
    cJSON_AddNumberToObject(o, "mean_ssim", nr->ssim);
    cJSON_AddNumberToObject(o, "accuracy", nr->accuracy);
    cJSON_AddItemToArray(noise, o);
  }
  cJSON *checks = cJSON_AddArrayToObject(root, "checks");
  for (int i = 0; i < r->n_checks; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "check", r->checks[i].name);
    cJSON_AddBoolToObject(o, "passed", r->checks[i].passed);
    cJSON_AddStringToObject(o, "message", r->checks[i].message);
    cJSON_AddItemToArray(checks, o);
  }
  Status s = report_write_json(dir, "results.json", root, err);
  cJSON_Delete(root);
  if (s != STATUS_OK) return s;
  /* CSV: one row per attack and eps, the baseline first */
  const double step = data_grey_step(d ? d->bits : 0);
  ReportText csv = {0};
  report_text_add(&csv,
                  "attack,norm,eps,eps_grey_levels,target,accuracy,balanced_accuracy,auc,missed,"
                  "drop_pct,success_rate,mean_linf,mean_l2,mean_mse,mean_ssim,mean_psnr,"
                  "mean_confidence\nbaseline,,0,0,,%.6f,%.6f,%.6f,0,0,0,0,0,0,1,,\n",
                  r->clean_accuracy, r->clean_balanced_accuracy, r->clean_auc);
  for (int i = 0; i < r->n_rows; i++) {
    const SweepRow *w = &r->rows[i];
    char psnr[32] = "", grey[32] = "";
    if (isfinite(w->psnr)) snprintf(psnr, sizeof psnr, "%.4f", w->psnr);
    if (step > 0 && w->norm == NORM_LINF) snprintf(grey, sizeof grey, "%.4g", w->eps / step);
    report_text_add(
        &csv, "%s,%s,%g,%s,%s,%.6f,%.6f,%.6f,%d,%.4f,%.6f,%.6g,%.6g,%.6g,%.6f,%s,%.6f\n", w->attack,
        w->norm == NORM_LINF ? "linf" : "l2", w->eps, grey, target_name(w->target), w->accuracy,
        w->balanced_accuracy, w->auc, w->missed, w->drop_pct, w->success_rate, w->linf, w->l2,
        w->mse, w->ssim, psnr, w->confidence);
  }
  s = report_text_write(&csv, dir, "results.csv", err);
  return s == STATUS_OK ? write_images_csv(r, d, dir, err) : s;
}

Status triage_write(const TriageResult *r, const Dataset *d, const Net *net, const char *dir,
                    const char *model, const char *data, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "attack", r->attack);
  cJSON_AddStringToObject(root, "method", r->one_run ? "minimal-norm" : "bisection");
  cJSON_AddNumberToObject(root, "iterations", r->iters);
  cJSON_AddNumberToObject(root, "eps_max", r->eps_max);
  cJSON_AddNumberToObject(root, "tolerance", r->tol);
  cJSON_AddNumberToObject(root, "flag_fraction", r->flag_frac);
  cJSON_AddNumberToObject(root, "bits", d ? d->bits : 0);
  add_window(root, d);
  cJSON_AddNumberToObject(root, "n", r->n);
  cJSON_AddNumberToObject(root, "n_flagged", r->n_flagged);
  cJSON_AddBoolToObject(root, "labelled", r->labelled);
  const int k = net_num_classes(net);
  cJSON *names = cJSON_AddArrayToObject(root, "class_names");
  char buf[16];
  for (int c = 0; c < k; c++)
    cJSON_AddItemToArray(names, cJSON_CreateString(net_class_name(net, c, buf)));
  if (r->labelled) {
    cJSON_AddNumberToObject(root, "n_flagged_wrong", r->n_flagged_wrong);
    cJSON_AddNumberToObject(root, "accuracy_all", r->accuracy_all);
    cJSON_AddNumberToObject(root, "accuracy_aware", r->accuracy_aware);
    cJSON_AddNumberToObject(root, "balanced_all", r->balanced_all);
    cJSON_AddNumberToObject(root, "balanced_aware", r->balanced_aware);
    cJSON_AddNumberToObject(root, "deferral_auc", r->curve_auc[DEFER_ADVERSARIAL]);
    cJSON *curves = cJSON_AddObjectToObject(root, "deferral");
    for (int sc = 0; sc < DEFER_COUNT; sc++) {
      cJSON *c = cJSON_AddObjectToObject(curves, defer_name((DeferScore)sc));
      cJSON_AddNumberToObject(c, "auc", r->curve_auc[sc]);
      cJSON *pts = cJSON_AddArrayToObject(c, "points");
      for (int p = 0; p < TRIAGE_CURVE_POINTS; p++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "deferred", r->curve_frac[p]);
        cJSON_AddNumberToObject(o, "accuracy", r->curve_acc[sc][p]);
        cJSON_AddNumberToObject(o, "balanced_accuracy", r->curve_bal[sc][p]);
        cJSON_AddItemToArray(pts, o);
      }
    }
  }
  cJSON *items = cJSON_AddArrayToObject(root, "images");
  for (int i = 0; i < r->n; i++) {
    const TriageItem *t = &r->items[i];
    cJSON *o = cJSON_CreateObject();
    char id[64];
    cJSON_AddStringToObject(o, "file", d ? dataset_image_id(d, t->index, id, sizeof id) : "");
    if (d) cJSON_AddStringToObject(o, "id", dataset_image_hash(d, t->index, id, sizeof id));
    cJSON_AddNumberToObject(o, "index", t->index);
    if (t->label >= 0) cJSON_AddStringToObject(o, "true", net_class_name(net, t->label, buf));
    cJSON_AddStringToObject(o, "predicted", net_class_name(net, t->pred, buf));
    if (t->flip_class >= 0)
      cJSON_AddStringToObject(o, "flips_to", net_class_name(net, t->flip_class, buf));
    cJSON_AddNumberToObject(o, "confidence", t->confidence);
    cJSON_AddNumberToObject(o, "margin", t->margin);
    cJSON_AddNumberToObject(o, "entropy", t->entropy);
    json_add_number(o, "min_eps", t->min_eps);
    cJSON_AddNumberToObject(o, "eps_below", t->eps_below);
    char png[64], full[4200];
    snprintf(png, sizeof png, "images/fragile_%05d.png", t->index);
    snprintf(full, sizeof full, "%s/%s", dir, png);
    if (access(full, R_OK) == 0) cJSON_AddStringToObject(o, "png", png);
    cJSON_AddBoolToObject(o, "flagged", t->flagged);
    if (t->label >= 0) cJSON_AddBoolToObject(o, "misclassified", t->pred != t->label);
    cJSON_AddItemToArray(items, o);
  }
  if (r->n_volumes && d) {
    cJSON *vols = cJSON_AddArrayToObject(root, "volumes");
    cJSON_AddNumberToObject(root, "n_volumes_flagged", r->n_volumes_flagged);
    if (r->volumes_labelled) {
      cJSON_AddNumberToObject(root, "volume_accuracy_all", r->volume_accuracy_all);
      cJSON_AddNumberToObject(root, "volume_accuracy_aware", r->volume_accuracy_aware);
    }
    for (int i = 0; i < r->n_volumes; i++) {
      const VolumeTriageItem *v = &r->volumes[i];
      cJSON *o = cJSON_CreateObject();
      char name[4200];
      cJSON_AddStringToObject(o, "volume", dataset_volume_name(d, v->first, name, sizeof name));
      cJSON_AddStringToObject(
          o, "id", dataset_volume_hash(d, v->first, v->first + v->slices, name, sizeof name));
      cJSON_AddNumberToObject(o, "slices", v->slices);
      if (v->label >= 0) cJSON_AddStringToObject(o, "true", net_class_name(net, v->label, buf));
      cJSON_AddStringToObject(o, "predicted", net_class_name(net, v->pred, buf));
      if (v->flip_class >= 0)
        cJSON_AddStringToObject(o, "flips_to", net_class_name(net, v->flip_class, buf));
      cJSON_AddNumberToObject(o, "confidence", v->confidence);
      json_add_number(o, "min_eps", v->min_eps);
      cJSON_AddNumberToObject(o, "eps_below", v->eps_below);
      cJSON_AddBoolToObject(o, "flagged", v->flagged);
      if (v->label >= 0) cJSON_AddBoolToObject(o, "misclassified", v->pred != v->label);
      cJSON_AddItemToArray(vols, o);
    }
  }
  Status s = report_write_json(dir, "triage.json", root, err);
  cJSON_Delete(root);
  if (s != STATUS_OK) return s;
  ReportText csv = {0};
  const double step = data_grey_step(d ? d->bits : 0);
  if (r->n_volumes && d) {
    report_text_add(&csv,
                    "rank,volume,id,slices,true,predicted,confidence,min_eps,flips_to,flagged,"
                    "misclassified\n");
    for (int i = 0; i < r->n_volumes; i++) {
      const VolumeTriageItem *v = &r->volumes[i];
      char eps[32] = "inf", name[4200];
      if (isfinite(v->min_eps)) snprintf(eps, sizeof eps, "%.6g", v->min_eps);
      report_text_add(&csv, "%d,", i + 1);
      report_text_field(&csv, dataset_volume_name(d, v->first, name, sizeof name));
      report_text_add(&csv, ",%s,%d,",
                      dataset_volume_hash(d, v->first, v->first + v->slices, name, sizeof name),
                      v->slices);
      report_text_field(&csv, v->label >= 0 ? net_class_name(net, v->label, buf) : "");
      report_text_add(&csv, ",");
      report_text_field(&csv, net_class_name(net, v->pred, buf));
      report_text_add(&csv, ",%.6f,%s,", v->confidence, eps);
      report_text_field(&csv, v->flip_class >= 0 ? net_class_name(net, v->flip_class, buf) : "");
      report_text_add(&csv, ",%d,%s\n", v->flagged,
                      v->label < 0          ? ""
                      : v->pred != v->label ? "1"
                                            : "0");
    }
    s = report_text_write(&csv, dir, "triage_volumes.csv", err);
    if (s != STATUS_OK) return s;
  }
  report_text_add(&csv,
                  "rank,file,id,true,predicted,confidence,margin,entropy,min_eps,"
                  "min_eps_grey_levels,flips_to,flagged,misclassified\n");
  for (int i = 0; i < r->n; i++) {
    const TriageItem *t = &r->items[i];
    char eps[32] = "inf", grey[32] = "", id[64];
    if (isfinite(t->min_eps)) snprintf(eps, sizeof eps, "%.6g", t->min_eps);
    if (isfinite(t->min_eps) && step > 0) snprintf(grey, sizeof grey, "%.4g", t->min_eps / step);
    report_text_add(&csv, "%d,", i + 1);
    report_text_field(&csv, d ? dataset_image_id(d, t->index, id, sizeof id) : "");
    report_text_add(&csv, ",%s,", d ? dataset_image_hash(d, t->index, id, sizeof id) : "");
    report_text_field(&csv, t->label >= 0 ? net_class_name(net, t->label, buf) : "");
    report_text_add(&csv, ",");
    report_text_field(&csv, net_class_name(net, t->pred, buf));
    report_text_add(&csv, ",%.6f,%.6f,%.6f,%s,%s,", t->confidence, t->margin, t->entropy, eps,
                    grey);
    report_text_field(&csv, t->flip_class >= 0 ? net_class_name(net, t->flip_class, buf) : "");
    report_text_add(&csv, ",%d,%s\n", t->flagged,
                    t->label < 0          ? ""
                    : t->pred != t->label ? "1"
                                          : "0");
  }
  return report_text_write(&csv, dir, "triage.csv", err);
}

Status triage_write_thumbnails(const TriageResult *r, const Dataset *d, const char *dir, int count,
                               MrError *err) {
  Status made = report_make_dir(dir, "images", err);
  if (made != STATUS_OK) return made;
  char images[4200];
  snprintf(images, sizeof images, "%s/images", dir);
  const size_t per = (size_t)d->c * d->h * d->w;
  for (int i = 0; i < r->n && i < count; i++) {
    char path[4300];
    snprintf(path, sizeof path, "%s/fragile_%05d.png", images, r->items[i].index);
    Status s = image_write_png(path, d->images + per * r->items[i].index, d->c, d->h, d->w, 2, err);
    if (s != STATUS_OK) return s;
  }
  return STATUS_OK;
}
