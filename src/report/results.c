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

#include "report.h"

/* path written through a temporary file and a rename */
static Status write_atomic(const char *path, const char *text, MrError *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
  const size_t n = strlen(text);
  int ok = fwrite(text, 1, n, f) == n && fflush(f) == 0;
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return mr_error_set(err, STATUS_ERR_IO, "%s: write failed", path);
  }
  return STATUS_OK;
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

Status sweep_write(const SweepResult *r, const char *dir, const char *model, const char *data,
                   const char *split, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "split", split);
  cJSON_AddNumberToObject(root, "n", r->n);
  cJSON_AddNumberToObject(root, "classes", r->k);
  cJSON_AddNumberToObject(root, "clean_accuracy", r->clean_accuracy);
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
    cJSON_AddNumberToObject(o, "drop_pct", w->drop_pct);
    cJSON_AddNumberToObject(o, "success_rate", w->success_rate);
    json_add_number(o, "mean_linf", w->linf);
    json_add_number(o, "mean_l2", w->l2);
    json_add_number(o, "mean_mse", w->mse);
    json_add_number(o, "mean_ssim", w->ssim);
    json_add_number(o, "mean_psnr", w->psnr);
    json_add_number(o, "mean_confidence", w->confidence);
    json_add_number(o, "seconds", w->seconds);
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
  ReportText csv = {0};
  report_text_add(&csv,
                  "attack,norm,eps,target,accuracy,drop_pct,success_rate,mean_linf,mean_l2,"
                  "mean_mse,mean_ssim,mean_psnr,mean_confidence\nbaseline,,0,,%.6f,0,0,0,0,0,1,,\n",
                  r->clean_accuracy);
  for (int i = 0; i < r->n_rows; i++) {
    const SweepRow *w = &r->rows[i];
    char psnr[32] = "";
    if (isfinite(w->psnr)) snprintf(psnr, sizeof psnr, "%.4f", w->psnr);
    report_text_add(&csv, "%s,%s,%g,%s,%.6f,%.4f,%.6f,%.6g,%.6g,%.6g,%.6f,%s,%.6f\n", w->attack,
                    w->norm == NORM_LINF ? "linf" : "l2", w->eps, target_name(w->target),
                    w->accuracy, w->drop_pct, w->success_rate, w->linf, w->l2, w->mse, w->ssim,
                    psnr, w->confidence);
  }
  return report_text_write(&csv, dir, "results.csv", err);
}

Status triage_write(const TriageResult *r, const char *dir, const char *model, const char *data,
                    MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "attack", r->attack);
  cJSON_AddNumberToObject(root, "eps_max", r->eps_max);
  cJSON_AddNumberToObject(root, "tolerance", r->tol);
  cJSON_AddNumberToObject(root, "flag_fraction", r->flag_frac);
  cJSON_AddNumberToObject(root, "n", r->n);
  cJSON_AddNumberToObject(root, "n_flagged", r->n_flagged);
  cJSON_AddNumberToObject(root, "accuracy_all", r->accuracy_all);
  cJSON_AddNumberToObject(root, "accuracy_aware", r->accuracy_aware);
  cJSON_AddNumberToObject(root, "deferral_auc", r->curve_auc);
  cJSON *curve = cJSON_AddArrayToObject(root, "deferral_curve");
  for (int p = 0; p < TRIAGE_CURVE_POINTS; p++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "deferred", r->curve_frac[p]);
    cJSON_AddNumberToObject(o, "accuracy", r->curve_acc[p]);
    cJSON_AddItemToArray(curve, o);
  }
  cJSON *items = cJSON_AddArrayToObject(root, "images");
  for (int i = 0; i < r->n; i++) {
    const TriageItem *t = &r->items[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", t->index);
    cJSON_AddNumberToObject(o, "label", t->label);
    cJSON_AddNumberToObject(o, "prediction", t->pred);
    cJSON_AddNumberToObject(o, "confidence", t->confidence);
    json_add_number(o, "min_eps", t->min_eps);
    cJSON_AddNumberToObject(o, "eps_below", t->eps_below);
    char png[64], full[4200];
    snprintf(png, sizeof png, "images/fragile_%05d.png", t->index);
    snprintf(full, sizeof full, "%s/%s", dir, png);
    if (access(full, R_OK) == 0) cJSON_AddStringToObject(o, "png", png);
    cJSON_AddBoolToObject(o, "flagged", t->flagged);
    cJSON_AddItemToArray(items, o);
  }
  Status s = report_write_json(dir, "triage.json", root, err);
  cJSON_Delete(root);
  if (s != STATUS_OK) return s;
  ReportText csv = {0};
  report_text_add(&csv, "rank,index,label,prediction,confidence,min_eps,flagged\n");
  for (int i = 0; i < r->n; i++) {
    const TriageItem *t = &r->items[i];
    char eps[32] = "inf";
    if (isfinite(t->min_eps)) snprintf(eps, sizeof eps, "%.6g", t->min_eps);
    report_text_add(&csv, "%d,%d,%d,%d,%.6f,%s,%d\n", i + 1, t->index, t->label, t->pred,
                    t->confidence, eps, t->flagged);
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
