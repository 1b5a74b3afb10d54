/* The segmentation sweep's files: seg_results.json (everything the report
 * and paper 002's Table 1 need), seg_results.csv (a row per attack) and
 * seg_images.csv (each image's Dice clean and under every row). Written
 * atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static cJSON *class_array(const double *v, int k) {
  cJSON *a = cJSON_CreateArray();
  for (int c = 0; c < k; c++) {
    cJSON *x = isfinite(v[c]) ? cJSON_CreateNumber(v[c]) : cJSON_CreateNull();
    cJSON_AddItemToArray(a, x);
  }
  return a;
}

Status seg_sweep_write(const SegSweepResult *r, const Dataset *d, const char *dir,
                       const char *model, const char *data, const char *split, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "task", "segment");
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "split", split);
  cJSON_AddNumberToObject(root, "images", r->n);
  cJSON_AddNumberToObject(root, "bits", d->bits);
  cJSON *names = cJSON_AddArrayToObject(root, "classes");
  for (int c = 0; c < r->k; c++) cJSON_AddItemToArray(names, cJSON_CreateString(r->class_names[c]));
  report_add_training(root, r->training);
  cJSON_AddStringToObject(root, "dice_convention",
                          "per image, the mean over the foreground classes present in the truth "
                          "or the prediction; 1 when neither has any; the set's Dice is the mean "
                          "over images");
  cJSON *clean = cJSON_AddObjectToObject(root, "clean");
  json_add_number(clean, "dice", r->clean.mean_dice);
  json_add_number(clean, "iou", r->clean.mean_iou);
  json_add_number(clean, "pixel_accuracy", r->clean.pixel_accuracy);
  cJSON_AddItemToObject(clean, "class_dice", class_array(r->clean.class_dice, r->k));
  cJSON *rows = cJSON_AddArrayToObject(root, "rows");
  for (int i = 0; i < r->n_rows; i++) {
    const SegRow *w = &r->rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "attack", w->attack);
    cJSON_AddStringToObject(o, "norm", w->norm == NORM_L2 ? "l2" : "linf");
    json_add_number(o, "eps", w->eps);
    if (w->dag_target >= 0)
      cJSON_AddStringToObject(o, "dag_target", dag_target_name((DagTarget)w->dag_target));
    json_add_number(o, "dice", w->dice);
    json_add_number(o, "iou", w->iou);
    json_add_number(o, "pixel_accuracy", w->pixel_acc);
    json_add_number(o, "dice_vs_clean", w->dice_vs_clean);
    if (w->target_reached >= 0) json_add_number(o, "target_reached", w->target_reached);
    if (w->changed_reached >= 0) json_add_number(o, "changed_reached", w->changed_reached);
    json_add_number(o, "drop_pct", w->drop_pct);
    json_add_number(o, "linf", w->linf);
    json_add_number(o, "l2", w->l2);
    json_add_number(o, "mse", w->mse);
    json_add_number(o, "ssim", w->ssim);
    json_add_number(o, "psnr", w->psnr);
    json_add_number(o, "seconds", w->seconds);
    cJSON_AddItemToObject(o, "class_dice", class_array(w->class_dice, r->k));
    cJSON_AddItemToArray(rows, o);
  }
  cJSON *noise = cJSON_AddArrayToObject(root, "noise");
  for (int i = 0; i < r->n_noise; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", noise_name(r->noise[i].kind));
    json_add_number(o, "ssim_target", r->noise[i].ssim_target);
    json_add_number(o, "level", r->noise[i].level);
    json_add_number(o, "ssim", r->noise[i].ssim);
    json_add_number(o, "dice", r->noise[i].dice);
    cJSON_AddItemToArray(noise, o);
  }
  cJSON *t1 = cJSON_AddObjectToObject(root, "table1");
  json_add_number(t1, "clean", r->clean.mean_dice);
  json_add_number(t1, "rician", r->n_noise ? r->noise[0].dice : NAN);
  json_add_number(t1, "adversarial_mean", r->adv_mean_dice);
  json_add_number(t1, "drop_pct", r->adv_drop_pct);
  Status s = report_write_json(dir, "seg_results.json", root, err);
  cJSON_Delete(root);
  if (s != STATUS_OK) return s;

  ReportText t = {0};
  report_text_add(&t,
                  "attack,norm,eps,dice,iou,pixel_accuracy,dice_vs_clean,target_reached,"
                  "changed_reached,drop_pct,linf,l2,mse,ssim,psnr,seconds\n");
  report_text_add(&t, "clean,,0,%.6f,%.6f,%.6f,1,,,0,0,0,0,1,,0\n", r->clean.mean_dice,
                  r->clean.mean_iou, r->clean.pixel_accuracy);
  for (int i = 0; i < r->n_rows; i++) {
    const SegRow *w = &r->rows[i];
    report_text_add(&t, "%s,%s,%g,%.6f,%.6f,%.6f,%.6f,", w->attack,
                    w->norm == NORM_L2 ? "l2" : "linf", w->eps, w->dice, w->iou, w->pixel_acc,
                    w->dice_vs_clean);
    if (w->target_reached >= 0) report_text_add(&t, "%.6f", w->target_reached);
    report_text_add(&t, ",");
    if (w->changed_reached >= 0) report_text_add(&t, "%.6f", w->changed_reached);
    report_text_add(&t, ",%.4f,%.6f,%.6f,%.8f,%.6f,%.4f,%.2f\n", w->drop_pct, w->linf, w->l2,
                    w->mse, w->ssim, w->psnr, w->seconds);
  }
  for (int i = 0; i < r->n_noise; i++)
    report_text_add(&t, "%s noise,,%g,%.6f,,,,,,%.4f,,,,%.6f,,\n", noise_name(r->noise[i].kind),
                    r->noise[i].level, r->noise[i].dice,
                    r->clean.mean_dice > 0
                        ? 100.0 * (r->clean.mean_dice - r->noise[i].dice) / r->clean.mean_dice
                        : 0.0,
                    r->noise[i].ssim);
  s = report_text_write(&t, dir, "seg_results.csv", err);
  if (s != STATUS_OK) return s;

  report_text_add(&t, "image,id,dice_clean");
  for (int i = 0; i < r->n_rows; i++)
    report_text_add(&t, ",dice_%s_%g", r->rows[i].attack, r->rows[i].eps);
  report_text_add(&t, "\n");
  for (int j = 0; j < r->n; j++) {
    char buf[64];
    report_text_field(&t, dataset_image_id(d, j, buf, sizeof buf));
    report_text_add(&t, ",%s", dataset_image_hash(d, j, buf, sizeof buf));
    report_text_add(&t, ",%.6f", r->clean.image_dice[j]);
    for (int i = 0; i < r->n_rows; i++) report_text_add(&t, ",%.6f", r->rows[i].image_dice[j]);
    report_text_add(&t, "\n");
  }
  return report_text_write(&t, dir, "seg_images.csv", err);
}

Status seg_compare_write(const SegSweepResult *res, Net *const *nets, const char *const *names,
                         int n, const double *transfer, const char *dir, const char *data,
                         MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "task", "segment");
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddNumberToObject(root, "images", n ? res[0].n : 0);
  cJSON *models = cJSON_AddArrayToObject(root, "models");
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(models, cJSON_CreateString(names[i]));
  cJSON *t1 = cJSON_AddArrayToObject(root, "table1");
  for (int i = 0; i < n; i++) {
    const SegSweepResult *r = &res[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", names[i]);
    cJSON_AddStringToObject(o, "arch", net_spec(nets[i])->arch);
    cJSON_AddNumberToObject(o, "params", (double)net_param_count(nets[i]));
    report_add_training(o, r->training);
    json_add_number(o, "clean", r->clean.mean_dice);
    json_add_number(o, "rician", r->n_noise ? r->noise[0].dice : NAN);
    json_add_number(o, "adversarial_mean", r->adv_mean_dice);
    json_add_number(o, "drop_pct", r->adv_drop_pct);
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (int j = 0; j < r->n_rows; j++) {
      cJSON *w = cJSON_CreateObject();
      cJSON_AddStringToObject(w, "attack", r->rows[j].attack);
      json_add_number(w, "eps", r->rows[j].eps);
      json_add_number(w, "dice", r->rows[j].dice);
      json_add_number(w, "dice_vs_clean", r->rows[j].dice_vs_clean);
      json_add_number(w, "mse", r->rows[j].mse);
      json_add_number(w, "ssim", r->rows[j].ssim);
      cJSON_AddItemToArray(rows, w);
    }
    cJSON_AddItemToArray(t1, o);
  }
  if (transfer) {
    cJSON *t2 = cJSON_AddObjectToObject(root, "table2");
    cJSON_AddStringToObject(t2, "layout", "rows: crafted on, columns: evaluated on, mean Dice");
    for (int t = 0; t < DAG_TARGET_COUNT; t++) {
      char key[16];
      snprintf(key, sizeof key, "type_%s", dag_target_name((DagTarget)t));
      cJSON *m = cJSON_AddArrayToObject(t2, key);
      for (int i = 0; i < n; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < n; j++)
          cJSON_AddItemToArray(row, cJSON_CreateNumber(transfer[(size_t)t * n * n + i * n + j]));
        cJSON_AddItemToArray(m, row);
      }
    }
  }
  const Status s = report_write_json(dir, "seg_compare.json", root, err);
  cJSON_Delete(root);
  return s;
}

Status seg_triage_write(const SegTriageResult *r, const Dataset *d, const char *dir,
                        const char *model, const char *data, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "task", "segment");
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "attack", r->attack);
  json_add_number(root, "eps_max", r->eps_max);
  json_add_number(root, "tol", r->tol);
  json_add_number(root, "dice_threshold", r->dice_threshold);
  json_add_number(root, "flag_fraction", r->flag_frac);
  json_add_number(root, "dice_all", r->dice_all);
  json_add_number(root, "dice_aware", r->dice_aware);
  cJSON *items = cJSON_AddArrayToObject(root, "images");
  ReportText t = {0};
  report_text_add(&t, "rank,image,id,min_eps,eps_below,clean_dice,flagged\n");
  for (int i = 0; i < r->n; i++) {
    const SegTriageItem *it = &r->items[i];
    char buf[64];
    const char *id = dataset_image_id(d, it->index, buf, sizeof buf);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image", id);
    char hash[24];
    cJSON_AddStringToObject(o, "id", dataset_image_hash(d, it->index, hash, sizeof hash));
    json_add_number(o, "min_eps", it->min_eps);
    json_add_number(o, "eps_below", it->eps_below);
    json_add_number(o, "clean_dice", it->clean_dice);
    cJSON_AddBoolToObject(o, "flagged", it->flagged);
    cJSON_AddItemToArray(items, o);
    report_text_add(&t, "%d,", i + 1);
    report_text_field(&t, id);
    report_text_add(&t, ",%s", hash);
    if (isinf(it->min_eps))
      report_text_add(&t, ",inf");
    else
      report_text_add(&t, ",%.6g", it->min_eps);
    report_text_add(&t, ",%.6g,%.6f,%d\n", it->eps_below, it->clean_dice, it->flagged);
  }
  Status s = report_write_json(dir, "seg_triage.json", root, err);
  cJSON_Delete(root);
  if (s != STATUS_OK) {
    free(t.buf);
    return s;
  }
  return report_text_write(&t, dir, "seg_triage.csv", err);
}
