/* compare.json / compare.csv / transfer.csv: the model comparison as the
 * report and a spreadsheet read it. Written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static Status write_json(const CompareResult *r, const char *dir, const char *data,
                         const char *split, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "data", data);
  cJSON_AddStringToObject(root, "split", split);
  cJSON_AddNumberToObject(root, "n", r->n_images);
  cJSON_AddNumberToObject(root, "triage_eps_max", r->triage_eps_max);
  cJSON_AddStringToObject(root, "verdict", r->verdict);
  cJSON_AddNumberToObject(root, "bits", r->bits);
  if (r->window.width > 0) {
    const double w[2] = {r->window.center, r->window.width};
    cJSON_AddItemToObject(root, "window", cJSON_CreateDoubleArray(w, 2));
  }
  if (r->best >= 0) cJSON_AddStringToObject(root, "deploy", r->models[r->best].name);
  cJSON *models = cJSON_AddArrayToObject(root, "models");
  for (int i = 0; i < r->n; i++) {
    const CompareEntry *e = &r->models[i];
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", e->name);
    cJSON_AddStringToObject(m, "arch", e->arch);
    cJSON_AddNumberToObject(m, "params", (double)e->params);
    cJSON_AddNumberToObject(m, "mflops", e->flops / 1e6);
    report_add_training(m, e->training);
    cJSON_AddNumberToObject(m, "clean_accuracy", e->sweep.clean_accuracy);
    cJSON_AddNumberToObject(m, "clean_balanced_accuracy", e->sweep.clean_balanced_accuracy);
    cJSON_AddNumberToObject(m, "majority_share", e->sweep.majority_share);
    cJSON_AddNumberToObject(m, "robust_balanced_accuracy", e->robust_balanced);
    json_add_number(m, "balanced_halving_eps", e->sweep.halving_eps);
    cJSON_AddBoolToObject(m, "near_chance", e->near_chance);
    cJSON_AddNumberToObject(m, "rank", e->rank);
    if (e->sweep.positive >= 0) {
      cJSON_AddStringToObject(m, "positive_class", e->sweep.class_names[e->sweep.positive]);
      cJSON_AddNumberToObject(m, "positives", e->sweep.positives);
      cJSON_AddNumberToObject(m, "clean_detected", e->sweep.clean_detected);
    }
    cJSON *rows = cJSON_AddArrayToObject(m, "rows");
    for (int j = 0; j < e->sweep.n_rows; j++) {
      const SweepRow *w = &e->sweep.rows[j];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "attack", w->attack);
      cJSON_AddStringToObject(o, "norm", w->norm == NORM_LINF ? "linf" : "l2");
      cJSON_AddNumberToObject(o, "eps", w->eps);
      cJSON_AddNumberToObject(o, "accuracy", w->accuracy);
      cJSON_AddNumberToObject(o, "balanced_accuracy", w->balanced_accuracy);
      if (e->sweep.positive >= 0)
        cJSON_AddNumberToObject(o, "positives_detected", w->positives_detected);
      cJSON_AddNumberToObject(o, "drop_pct", w->drop_pct);
      json_add_number(o, "mean_ssim", w->ssim);
      cJSON_AddItemToArray(rows, o);
    }
    if (e->triaged) {
      json_add_number(m, "min_eps_median", e->min_eps_median);
      json_add_number(m, "accuracy_aware", e->accuracy_aware);
      json_add_number(m, "balanced_aware", e->balanced_aware);
      cJSON_AddNumberToObject(m, "n_flagged", e->triage.n_flagged);
      cJSON_AddNumberToObject(m, "n_flagged_wrong", e->triage.n_flagged_wrong);
      if (e->triage_csv[0]) cJSON_AddStringToObject(m, "triage_csv", e->triage_csv);
    }
    cJSON_AddItemToArray(models, m);
  }
  if (r->transfer) {
    cJSON *t = cJSON_AddObjectToObject(root, "transfer");
    cJSON_AddStringToObject(t, "attack", attack_name(r->transfer_attack.kind));
    cJSON_AddStringToObject(t, "norm", r->transfer_attack.norm == NORM_LINF ? "linf" : "l2");
    cJSON_AddNumberToObject(t, "eps", r->transfer_attack.eps);
    cJSON *acc = cJSON_AddArrayToObject(t, "accuracy"); /* rows: source, columns: target */
    for (int i = 0; i < r->n; i++)
      cJSON_AddItemToArray(acc, cJSON_CreateDoubleArray(r->transfer + (size_t)i * r->n, r->n));
  }
  Status s = report_write_json(dir, "compare.json", root, err);
  cJSON_Delete(root);
  return s;
}

Status compare_write(const CompareResult *r, const char *dir, const char *data, const char *split,
                     MrError *err) {
  Status s = write_json(r, dir, data, split, err);
  if (s != STATUS_OK) return s;
  ReportText csv = {0};
  report_text_add(&csv,
                  "model,rank,arch,params,mflops,training,attack,norm,eps,accuracy,"
                  "balanced_accuracy,drop_pct,min_eps_median\n");
  for (int i = 0; i < r->n; i++) {
    const CompareEntry *e = &r->models[i];
    char kind[96], median[32] = "";
    training_summary(e->training, kind, sizeof kind);
    if (e->triaged) snprintf(median, sizeof median, "%.6g", e->min_eps_median);
    for (int j = -1; j < e->sweep.n_rows; j++) {
      const SweepRow *w = j >= 0 ? &e->sweep.rows[j] : NULL;
      report_text_field(&csv, e->name);
      report_text_add(&csv, ",%d,%s,%zu,%.3f,", e->rank, e->arch, e->params, e->flops / 1e6);
      report_text_field(&csv, kind);
      if (w)
        report_text_add(&csv, ",%s,%s,%g,%.6f,%.6f,%.4f,%s\n", w->attack,
                        w->norm == NORM_LINF ? "linf" : "l2", w->eps, w->accuracy,
                        w->balanced_accuracy, w->drop_pct, median);
      else
        report_text_add(&csv, ",baseline,,0,%.6f,%.6f,0,%s\n", e->sweep.clean_accuracy,
                        e->sweep.clean_balanced_accuracy, median);
    }
  }
  s = report_text_write(&csv, dir, "compare.csv", err);
  if (s == STATUS_OK && r->transfer) {
    report_text_add(&csv, "source\\target");
    for (int j = 0; j < r->n; j++)
      report_text_add(&csv, ","), report_text_field(&csv, r->models[j].name);
    report_text_add(&csv, "\n");
    for (int i = 0; i < r->n; i++) {
      report_text_field(&csv, r->models[i].name);
      for (int j = 0; j < r->n; j++)
        report_text_add(&csv, ",%.6f", r->transfer[(size_t)i * r->n + j]);
      report_text_add(&csv, "\n");
    }
    s = report_text_write(&csv, dir, "transfer.csv", err);
  }
  return s;
}
