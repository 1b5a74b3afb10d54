/* Segmentation scores: per-class Dice and IoU, pixel accuracy and the mean
 * foreground Dice (paper 002's score), with the empty-mask convention the
 * header states; and per-pixel prediction of a set through the net. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

/* Counts per class of one image: pred, truth, and both. */
static void image_counts(const int *pred, const int *truth, int P, int k, long *np, long *nt,
                         long *both) {
  memset(np, 0, sizeof(long) * k), memset(nt, 0, sizeof(long) * k),
      memset(both, 0, sizeof(long) * k);
  for (int p = 0; p < P; p++) {
    const int a = pred[p], b = truth[p];
    if (a >= 0 && a < k) np[a]++;
    if (b >= 0 && b < k) nt[b]++;
    if (a == b && a >= 0 && a < k) both[a]++;
  }
}

/* Dice and IoU of one class from its counts; NAN when absent from both. */
static double dice_of(long np, long nt, long both) {
  return np + nt ? 2.0 * both / (double)(np + nt) : NAN;
}
static double iou_of(long np, long nt, long both) {
  return np + nt - both ? both / (double)(np + nt - both) : NAN;
}

/* Mean over the foreground classes that are defined; 1 when none is. */
static double foreground_mean(const double *v, int k) {
  double sum = 0.0;
  int n = 0;
  for (int c = 1; c < k; c++)
    if (!isnan(v[c])) sum += v[c], n++;
  return n ? sum / n : 1.0;
}

double seg_image_dice(const int *pred, const int *truth, int pixels, int k) {
  long *counts = malloc(sizeof(long) * 3 * k);
  double *dice = malloc(sizeof(double) * k);
  if (!counts || !dice) {
    free(counts), free(dice);
    return NAN;
  }
  image_counts(pred, truth, pixels, k, counts, counts + k, counts + 2 * k);
  for (int c = 0; c < k; c++) dice[c] = dice_of(counts[c], counts[k + c], counts[2 * k + c]);
  const double mean = foreground_mean(dice, k);
  free(counts), free(dice);
  return mean;
}

void seg_metrics_free(SegMetrics *m) {
  free(m->dice), free(m->iou), free(m->image_dice), free(m->image_iou), free(m->image_pixel_acc);
  free(m->class_dice), free(m->class_iou);
  memset(m, 0, sizeof *m);
}

Status seg_metrics_compute(SegMetrics *m, const int *pred, const int *truth, int n, int pixels,
                           int k, MrError *err) {
  memset(m, 0, sizeof *m);
  if (n < 1 || pixels < 1 || k < 2 || k > MR_MAX_CLASSES)
    return mr_error_set(err, STATUS_ERR_ARG, "segmentation metrics of %d images, %d classes", n, k);
  m->n = n, m->k = k;
  m->dice = malloc(sizeof(double) * n * k), m->iou = malloc(sizeof(double) * n * k);
  m->image_dice = malloc(sizeof(double) * n), m->image_iou = malloc(sizeof(double) * n);
  m->image_pixel_acc = malloc(sizeof(double) * n);
  m->class_dice = malloc(sizeof(double) * k), m->class_iou = malloc(sizeof(double) * k);
  long *counts = malloc(sizeof(long) * 3 * k), *pooled = calloc(3 * (size_t)k, sizeof(long));
  if (!m->dice || !m->iou || !m->image_dice || !m->image_iou || !m->image_pixel_acc ||
      !m->class_dice || !m->class_iou || !counts || !pooled) {
    free(counts), free(pooled);
    seg_metrics_free(m);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for segmentation metrics");
  }
  long correct_all = 0;
  for (int i = 0; i < n; i++) {
    const int *a = pred + (size_t)i * pixels, *b = truth + (size_t)i * pixels;
    image_counts(a, b, pixels, k, counts, counts + k, counts + 2 * k);
    long correct = 0;
    for (int c = 0; c < k; c++) {
      m->dice[(size_t)i * k + c] = dice_of(counts[c], counts[k + c], counts[2 * k + c]);
      m->iou[(size_t)i * k + c] = iou_of(counts[c], counts[k + c], counts[2 * k + c]);
      correct += counts[2 * k + c];
      for (int j = 0; j < 3; j++) pooled[j * k + c] += counts[j * k + c];
    }
    m->image_dice[i] = foreground_mean(m->dice + (size_t)i * k, k);
    m->image_iou[i] = foreground_mean(m->iou + (size_t)i * k, k);
    m->image_pixel_acc[i] = (double)correct / pixels;
    correct_all += correct;
    m->mean_dice += m->image_dice[i] / n;
    m->mean_iou += m->image_iou[i] / n;
  }
  for (int c = 0; c < k; c++) {
    m->class_dice[c] = dice_of(pooled[c], pooled[k + c], pooled[2 * k + c]);
    m->class_iou[c] = iou_of(pooled[c], pooled[k + c], pooled[2 * k + c]);
  }
  m->pixel_accuracy = (double)correct_all / ((double)n * pixels);
  free(counts), free(pooled);
  return STATUS_OK;
}

void scores_argmax(const float *z, int batch, int k, int pixels, int *out) {
  for (int b = 0; b < batch; b++)
    for (int p = 0; p < pixels; p++) {
      const float *zb = z + (size_t)b * k * pixels + p;
      int best = 0;
      for (int c = 1; c < k; c++)
        if (zb[(size_t)c * pixels] > zb[(size_t)best * pixels]) best = c;
      out[(size_t)b * pixels + p] = best;
    }
}

void net_segment(Net *net, const float *x, int batch, int *pred) {
  scores_argmax(net_forward(net, x, batch, MODE_EVAL), batch, net_num_classes(net),
                net_output_pixels(net), pred);
}

Status net_segment_dataset(Net *net, const Dataset *d, int batch, int *pred, MrError *err) {
  const ModelSpec *spec = net_spec(net);
  if (net_output_pixels(net) != spec->in_h * spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE,
                        "%s answers %d values per class, not one per pixel of its %dx%d input",
                        spec->arch, net_output_pixels(net), spec->in_h, spec->in_w);
  if (d->c != spec->in_c || d->h != spec->in_h || d->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE, "images are %dx%dx%d, the model takes %dx%dx%d",
                        d->c, d->h, d->w, spec->in_c, spec->in_h, spec->in_w);
  const size_t per = (size_t)d->c * d->h * d->w, P = (size_t)d->h * d->w;
  for (int i = 0; i < d->n; i += batch) {
    const int b = d->n - i < batch ? d->n - i : batch;
    net_segment(net, d->images + per * i, b, pred + P * i);
  }
  return STATUS_OK;
}
