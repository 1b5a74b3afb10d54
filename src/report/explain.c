/* The report's explanations: saliency maps of clean and adversarial images
 * (paper 004 Figs 3-4) as heat-coloured PNGs, and the 2-D PCA embedding of
 * penultimate features with clean and adversarial points (paper 002 Fig. 3,
 * paper 004 Fig. 5), as JSON the report draws. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* A map scaled to its 99th percentile (as the SmoothGrad authors display
 * them) in "hot" colours (red, yellow, white) over the image in grey, each
 * pixel as opaque as it is salient: where the model looks, on what it sees.
 * image (c, h, w); rgb (3, h, w). */
static void heat_overlay(const float *map, const float *image, int c, int h, int w, float *rgb,
                         float *sorted) {
  const size_t hw = (size_t)h * w;
  memcpy(sorted, map, sizeof(float) * hw);
  qsort(sorted, hw, sizeof(float), float_compare);
  const float top = sorted[(size_t)(0.99 * (double)(hw - 1))];
  for (size_t i = 0; i < hw; i++) {
    const float v = top > 0 ? fminf(map[i] / top, 1.0f) : 0.0f;
    float grey = 0;
    for (int k = 0; k < c; k++) grey += image[k * hw + i] / c;
    const float hot[3] = {fminf(0.4f + 2.0f * v, 1.0f), fminf(fmaxf(2.0f * v - 0.6f, 0.0f), 1.0f),
                          fmaxf(3.0f * v - 2.0f, 0.0f)};
    const float alpha = fminf(1.2f * v, 0.85f);
    for (int k = 0; k < 3; k++) rgb[k * hw + i] = (1 - alpha) * 0.8f * grey + alpha * hot[k];
  }
}

typedef struct {
  const char *name; /* clean, clean_grad, ... */
  const float *image;
  const float *under; /* maps: the image they are drawn over; NULL for images */
} Panel;

Status saliency_write(Net *net, const Dataset *d, const AttackOptions *o, int count,
                      int smooth_samples, float smooth_sigma, const char *dir, MrError *err) {
  if (count > d->n) count = d->n;
  if (count <= 0) return STATUS_OK;
  Status s = report_make_dir(dir, "saliency", err);
  if (s != STATUS_OK) return s;
  const int k = net_num_classes(net);
  const size_t per = (size_t)d->c * d->h * d->w, hw = (size_t)d->h * d->w;
  float *adv = malloc(sizeof(float) * per * count), *probs = malloc(sizeof(float) * k * count * 2);
  float *grads = malloc(sizeof(float) * per * count * 4), *map = malloc(sizeof(float) * hw);
  float *rgb = malloc(sizeof(float) * hw * 3), *sorted = malloc(sizeof(float) * hw);
  int *pred = malloc(sizeof(int) * count * 2);
  if (!adv || !probs || !grads || !map || !rgb || !sorted || !pred)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for saliency maps");
  if (s == STATUS_OK) s = attack_run(net, o, d->images, d->labels, count, adv, err);
  if (s == STATUS_OK) {
    net_predict(net, d->images, count, probs);
    net_predict(net, adv, count, probs + (size_t)k * count);
    for (int i = 0; i < 2 * count; i++) pred[i] = argmax(probs + (size_t)i * k, k);
  }
  /* grads: clean vanilla, clean SmoothGrad, adversarial vanilla, adversarial SmoothGrad */
  for (int v = 0; s == STATUS_OK && v < 4; v++)
    s = saliency_gradient(net, v < 2 ? d->images : adv, pred + (v < 2 ? 0 : count), count,
                          v % 2 ? smooth_samples : 0, smooth_sigma, o->seed,
                          grads + per * count * v, err);
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "attack", attack_name(o->kind));
  cJSON_AddStringToObject(root, "norm", o->norm == NORM_LINF ? "linf" : "l2");
  cJSON_AddNumberToObject(root, "eps", o->eps);
  cJSON_AddNumberToObject(root, "smoothgrad_samples", smooth_samples);
  cJSON_AddNumberToObject(root, "smoothgrad_sigma", smooth_sigma);
  cJSON *list = cJSON_AddArrayToObject(root, "images");
  const int scale = d->h < 64 ? 4 : d->h < 128 ? 2 : 1;
  for (int i = 0; s == STATUS_OK && i < count; i++) {
    const float *clean = d->images + per * i, *attacked = adv + per * i;
    const Panel panels[6] = {{"clean", clean, NULL},
                             {"clean_gradient", grads + per * i, clean},
                             {"clean_smoothgrad", grads + per * (count + i), clean},
                             {"adversarial", attacked, NULL},
                             {"adversarial_gradient", grads + per * (2 * count + i), attacked},
                             {"adversarial_smoothgrad", grads + per * (3 * count + i), attacked}};
    cJSON *e = cJSON_CreateObject();
    char buf[3][16], id[64];
    cJSON_AddNumberToObject(e, "index", i);
    cJSON_AddStringToObject(e, "file", dataset_image_id(d, i, id, sizeof id));
    cJSON_AddStringToObject(e, "label", net_class_name(net, d->labels[i], buf[0]));
    cJSON_AddStringToObject(e, "clean_prediction", net_class_name(net, pred[i], buf[1]));
    cJSON_AddStringToObject(e, "adversarial_prediction",
                            net_class_name(net, pred[count + i], buf[2]));
    for (int p = 0; s == STATUS_OK && p < 6; p++) {
      char name[96], path[4400], key[64];
      snprintf(name, sizeof name, "saliency/%03d_%s.png", i, panels[p].name);
      snprintf(path, sizeof path, "%s/%s", dir, name);
      if (panels[p].under) {
        saliency_map(panels[p].image, d->c, d->h, d->w, map);
        heat_overlay(map, panels[p].under, d->c, d->h, d->w, rgb, sorted);
        s = image_write_png(path, rgb, 3, d->h, d->w, scale, err);
      } else {
        s = image_write_png(path, panels[p].image, d->c, d->h, d->w, scale, err);
      }
      snprintf(key, sizeof key, "%s_png", panels[p].name);
      cJSON_AddStringToObject(e, key, name);
    }
    cJSON_AddItemToArray(list, e);
  }
  if (s == STATUS_OK) s = report_write_json(dir, "saliency.json", root, err);
  cJSON_Delete(root);
  free(adv), free(probs), free(grads), free(map), free(rgb), free(sorted), free(pred);
  return s;
}

/* penultimate features of n images, in batches */
static void features_of(Net *net, const float *x, int n, int batch, float *feat) {
  const size_t per = (size_t)net_input_size(net);
  const int dim = net_feature_dim(net);
  for (int start = 0; start < n; start += batch) {
    const int b = n - start < batch ? n - start : batch;
    net_forward(net, x + per * start, b, MODE_EVAL);
    memcpy(feat + (size_t)start * dim, net_last_features(net), sizeof(float) * dim * b);
  }
}

Status embedding_write(Net *net, const Dataset *d, const AttackOptions *o, int n, const char *dir,
                       Journal *journal, MrError *err) {
  if (n > d->n) n = d->n;
  const int k = net_num_classes(net), dim = net_feature_dim(net), batch = 64;
  const size_t per = (size_t)d->c * d->h * d->w;
  float *adv = malloc(sizeof(float) * per * (n ? n : 1));
  float *feat = malloc(sizeof(float) * dim * 2 * (n ? n : 1));
  float *xy = malloc(sizeof(float) * 4 * (n ? n : 1)), *probs = malloc(sizeof(float) * k * batch);
  Status s =
      adv && feat && xy && probs ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int start = 0; s == STATUS_OK && start < n; start += batch) {
    const int b = n - start < batch ? n - start : batch;
    const JournalPart unit = {adv + per * start, sizeof(float) * per * b};
    char key[48];
    snprintf(key, sizeof key, "embedding/b%d", start);
    if (journal_restore(journal, key, &unit, 1)) continue;
    const AttackOptions at = attack_at(o, start);
    s = attack_run(net, &at, d->images + per * start, d->labels + start, b, adv + per * start, err);
    if (s == STATUS_OK) s = journal_record(journal, key, &unit, 1, err);
  }
  double explained[2] = {0, 0};
  if (s == STATUS_OK) {
    features_of(net, d->images, n, batch, feat);
    features_of(net, adv, n, batch, feat + (size_t)dim * n);
    s = pca_2d(feat, 2 * n, dim, n, xy, explained, err);
  }
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "method", "pca");
  cJSON_AddStringToObject(root, "attack", attack_name(o->kind));
  cJSON_AddStringToObject(root, "norm", o->norm == NORM_LINF ? "linf" : "l2");
  cJSON_AddNumberToObject(root, "eps", o->eps);
  cJSON_AddNumberToObject(root, "feature_dim", dim);
  cJSON_AddItemToObject(root, "explained_variance", cJSON_CreateDoubleArray(explained, 2));
  cJSON *names = cJSON_AddArrayToObject(root, "classes");
  for (int c = 0; c < k; c++) {
    char buf[16];
    cJSON_AddItemToArray(names, cJSON_CreateString(net_class_name(net, c, buf)));
  }
  cJSON *points = cJSON_AddArrayToObject(root, "points");
  for (int v = 0; s == STATUS_OK && v < 2; v++)
    for (int start = 0; start < n; start += batch) {
      const int b = n - start < batch ? n - start : batch;
      net_predict(net, (v ? adv : d->images) + per * start, b, probs);
      for (int i = 0; i < b; i++) {
        const int row = v * n + start + i;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "index", start + i);
        cJSON_AddBoolToObject(p, "adversarial", v);
        cJSON_AddNumberToObject(p, "label", d->labels[start + i]);
        cJSON_AddNumberToObject(p, "prediction", argmax(probs + (size_t)i * k, k));
        cJSON_AddNumberToObject(p, "x", xy[(size_t)row * 2]);
        cJSON_AddNumberToObject(p, "y", xy[(size_t)row * 2 + 1]);
        cJSON_AddItemToArray(points, p);
      }
    }
  if (s == STATUS_OK) s = report_write_json(dir, "embedding.json", root, err);
  cJSON_Delete(root);
  free(adv), free(feat), free(xy), free(probs);
  return s;
}
