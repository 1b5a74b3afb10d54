/* Segmentation examples for the report (paper 002 Fig. 2): the image, the
 * ground truth, the clean prediction and, for each attack, the adversarial
 * prediction as colour overlays, with the perturbation amplified around
 * mid-grey; listed in DIR/seg_examples.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* class colours (class 0, background, is left grey) */
static const float colours[8][3] = {
    {0.84f, 0.15f, 0.16f}, {0.17f, 0.63f, 0.17f}, {0.12f, 0.47f, 0.71f}, {1.0f, 0.5f, 0.05f},
    {0.58f, 0.4f, 0.74f},  {0.09f, 0.75f, 0.81f}, {0.89f, 0.47f, 0.76f}, {0.74f, 0.74f, 0.13f}};

/* The image (its first channel) in grey with each labelled pixel tinted. */
static void overlay(float *rgb, const float *img, const int *map, int h, int w) {
  const size_t P = (size_t)h * w;
  for (size_t p = 0; p < P; p++) {
    const float g = img[p];
    for (int ch = 0; ch < 3; ch++) {
      const float tint = map[p] > 0 ? colours[(map[p] - 1) % 8][ch] : g;
      rgb[ch * P + p] = map[p] > 0 ? 0.45f * g + 0.55f * tint : g;
    }
  }
}

static Status write_png(const char *dir, const char *name, const float *img, int c, int h, int w,
                        MrError *err) {
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return image_write_png(path, img, c, h, w, h < 64 ? 4 : h < 128 ? 2 : 1, err);
}

Status seg_examples_write(Net *net, const Dataset *d, const SegSweepOptions *o, int count,
                          const char *dir, MrError *err) {
  if (count > d->n) count = d->n;
  if (count <= 0 || !d->masks) return STATUS_OK;
  Status s = report_make_dir(dir, "images", err);
  if (s != STATUS_OK) return s;
  const int k = net_num_classes(net), h = d->h, w = d->w;
  const size_t per = (size_t)d->c * h * w, P = (size_t)h * w;
  /* the rows shown: each gradient attack at its largest eps, then each DAG type */
  AttackOptions rows[64];
  int dag_type[64], n_rows = 0;
  for (int a = 0; a < o->n_attacks && n_rows < 60 && o->n_eps; a++) {
    AttackOptions ao = o->base;
    ao.kind = o->attacks[a], ao.eps = o->eps[o->n_eps - 1];
    if (!ao.iters) ao.iters = attack_options_default(ao.kind).iters;
    dag_type[n_rows] = -1, rows[n_rows++] = ao;
  }
  for (int t = 0; t < DAG_TARGET_COUNT; t++) {
    if (!(o->dag & (1 << t))) continue;
    rows[n_rows] = o->dag_o, rows[n_rows].kind = ATTACK_DAG, rows[n_rows].seed = o->base.seed;
    dag_type[n_rows++] = t;
  }
  float *adv = malloc(sizeof(float) * per * count), *rgb = malloc(sizeof(float) * 3 * P);
  float *diff = malloc(sizeof(float) * per);
  int *clean = malloc(sizeof(int) * P * count), *pred = malloc(sizeof(int) * P * count);
  int *target = malloc(sizeof(int) * P * count);
  if (!adv || !rgb || !diff || !clean || !pred || !target)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for the segmentation examples");
  cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "examples");
  cJSON *names = cJSON_AddArrayToObject(root, "classes");
  for (int c = 0; c < k; c++) {
    char buf[16];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", net_class_name(net, c, buf));
    char hex[8] = "";
    if (c > 0) {
      const float *col = colours[(c - 1) % 8];
      snprintf(hex, sizeof hex, "#%02x%02x%02x", (int)(col[0] * 255), (int)(col[1] * 255),
               (int)(col[2] * 255));
    }
    cJSON_AddStringToObject(e, "colour", hex);
    cJSON_AddItemToArray(names, e);
  }
  if (s == STATUS_OK) net_segment(net, d->images, count, clean);
  cJSON **entries = calloc(count, sizeof(cJSON *));
  for (int i = 0; s == STATUS_OK && i < count; i++) {
    char name[96], id[64];
    cJSON *e = entries[i] = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "file", dataset_image_id(d, i, id, sizeof id));
    const float *x = d->images + per * i;
    snprintf(name, sizeof name, "images/seg_%03d_image.png", i);
    s = write_png(dir, name, x, d->c, h, w, err);
    cJSON_AddStringToObject(e, "image_png", name);
    overlay(rgb, x, d->masks + P * i, h, w);
    snprintf(name, sizeof name, "images/seg_%03d_truth.png", i);
    if (s == STATUS_OK) s = write_png(dir, name, rgb, 3, h, w, err);
    cJSON_AddStringToObject(e, "truth_png", name);
    overlay(rgb, x, clean + P * i, h, w);
    snprintf(name, sizeof name, "images/seg_%03d_clean.png", i);
    if (s == STATUS_OK) s = write_png(dir, name, rgb, 3, h, w, err);
    cJSON_AddStringToObject(e, "clean_png", name);
    cJSON_AddNumberToObject(e, "clean_dice",
                            seg_image_dice(clean + P * i, d->masks + P * i, (int)P, k));
    cJSON_AddArrayToObject(e, "attacks");
    cJSON_AddItemToArray(list, e);
  }
  for (int r = 0; s == STATUS_OK && r < n_rows; r++) {
    AttackOptions ao = rows[r];
    if (dag_type[r] >= 0) {
      dag_target((DagTarget)dag_type[r], &o->dag_targets, clean, count, h, w, k, ao.seed, 0,
                 target);
      ao.target = TARGET_MASK, ao.target_mask = target;
    }
    s = attack_run(net, &ao, d->images, d->masks, count, adv, err);
    if (s != STATUS_OK) break;
    net_segment(net, adv, count, pred);
    char label[48];
    snprintf(label, sizeof label, "%s%s%s", attack_name(ao.kind), dag_type[r] >= 0 ? " type " : "",
             dag_type[r] >= 0 ? dag_target_name((DagTarget)dag_type[r]) : "");
    /* one gain for the row: its largest change shown at half the grey range */
    float amp_max = 0;
    for (size_t j = 0; j < per * count; j++) amp_max = fmaxf(amp_max, fabsf(adv[j] - d->images[j]));
    const float gain = amp_max > 0 ? 0.5f / amp_max : 1.0f;
    for (int i = 0; s == STATUS_OK && i < count; i++) {
      char pname[96], dname[96];
      overlay(rgb, adv + per * i, pred + P * i, h, w);
      snprintf(pname, sizeof pname, "images/seg_%03d_adv%d.png", i, r);
      s = write_png(dir, pname, rgb, 3, h, w, err);
      for (size_t j = 0; j < per; j++)
        diff[j] = 0.5f + gain * (adv[per * i + j] - d->images[per * i + j]);
      snprintf(dname, sizeof dname, "images/seg_%03d_diff%d.png", i, r);
      if (s == STATUS_OK) s = write_png(dir, dname, diff, d->c, h, w, err);
      cJSON *a = cJSON_CreateObject();
      cJSON_AddStringToObject(a, "attack", label);
      json_add_number(a, "eps", ao.eps);
      cJSON_AddStringToObject(a, "prediction_png", pname);
      cJSON_AddStringToObject(a, "difference_png", dname);
      json_add_number(a, "gain", gain);
      json_add_number(a, "dice", seg_image_dice(pred + P * i, d->masks + P * i, (int)P, k));
      json_add_number(a, "dice_vs_clean", seg_image_dice(pred + P * i, clean + P * i, (int)P, k));
      cJSON_AddItemToArray(cJSON_GetObjectItem(entries[i], "attacks"), a);
    }
  }
  if (s == STATUS_OK) s = report_write_json(dir, "seg_examples.json", root, err);
  cJSON_Delete(root);
  free(entries), free(adv), free(rgb), free(diff), free(clean), free(pred), free(target);
  return s;
}
