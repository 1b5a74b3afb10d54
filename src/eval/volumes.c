/* Volumes in a data set of slices: the runs of images that are one DICOM/NIfTI
 * volume's axial slices (Dataset.volume), and what a 2-D model says of a whole
 * volume: the mean of its slices' class probabilities. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

int dataset_volume_end(const Dataset *d, int i) {
  if (!d->volume || d->volume[i] < 0) return i + 1;
  int end = i + 1;
  while (end < d->n && d->volume[end] == d->volume[i]) end++;
  return end;
}

const char *dataset_volume_name(const Dataset *d, int i, char *buf, size_t n) {
  char scratch[64];
  snprintf(buf, n, "%s", dataset_image_id(d, i, scratch, sizeof scratch));
  char *colon = d->volume && d->volume[i] >= 0 ? strrchr(buf, ':') : NULL;
  if (colon) *colon = 0;
  return buf;
}

const char *dataset_volume_hash(const Dataset *d, int first, int end, char *buf, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a over the slices' ids */
  for (int i = first; i < end; i++) {
    char id[24];
    dataset_image_hash(d, i, id, sizeof id);
    for (const char *p = id; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
  }
  snprintf(buf, n, "%016llx", (unsigned long long)h);
  return buf;
}

int volume_mean_prediction(const float *probs, int k, int first, int end, double *mean) {
  int best = 0;
  double best_p = -1;
  for (int c = 0; c < k; c++) {
    double sum = 0;
    for (int s = first; s < end; s++) sum += probs[(size_t)s * k + c];
    const double m = end > first ? sum / (end - first) : 0.0;
    if (mean) mean[c] = m;
    if (m > best_p) best_p = m, best = c;
  }
  return best;
}

void volume_accuracy(const Dataset *d, const float *probs, int k, int *volumes, int *labelled,
                     int *right) {
  *volumes = *labelled = *right = 0;
  for (int i = 0; d->volume && i < d->n;) {
    const int end = dataset_volume_end(d, i);
    if (d->volume[i] >= 0) {
      const int y = d->labels[i];
      (*volumes)++;
      if (y >= 0) (*labelled)++, *right += volume_mean_prediction(probs, k, i, end, NULL) == y;
    }
    i = end;
  }
}
