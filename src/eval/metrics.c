/* Classification metrics: accuracy, balanced accuracy, confusion matrix and
 * ROC AUC (Mann-Whitney rank statistic with ties averaged; one-vs-rest macro
 * mean for more than two classes), plus batched prediction over a dataset. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "medrobust.h"

typedef struct {
  float score;
  int positive;
} Scored;

static int cmp_score(const void *a, const void *b) {
  const float x = ((const Scored *)a)->score, y = ((const Scored *)b)->score;
  return (x > y) - (x < y);
}

/* AUC of scores for positives vs the rest; -1 if either group is empty. */
static double auc_binary(Scored *s, int n) {
  qsort(s, n, sizeof *s, cmp_score);
  double rank_sum = 0.0;
  long pos = 0;
  for (int i = 0; i < n;) {
    int j = i;
    while (j < n && s[j].score == s[i].score) j++;
    const double mid_rank = (i + 1 + j) / 2.0; /* ties share their average rank */
    for (int t = i; t < j; t++)
      if (s[t].positive) rank_sum += mid_rank, pos++;
    i = j;
  }
  const long neg = n - pos;
  if (!pos || !neg) return -1.0;
  return (rank_sum - pos * (pos + 1) / 2.0) / ((double)pos * neg);
}

Status metrics_compute(Metrics *m, const float *probs, const int *labels, int n, int k,
                       MrError *err) {
  memset(m, 0, sizeof *m);
  m->n = n, m->k = k;
  m->confusion = calloc((size_t)k * k, sizeof(int));
  Scored *s = malloc(sizeof(Scored) * (n ? n : 1));
  if (!m->confusion || !s) {
    free(s);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for metrics");
  }
  int correct = 0;
  for (int i = 0; i < n; i++) {
    const int best = argmax(probs + (size_t)i * k, k);
    if (labels[i] < 0 || labels[i] >= k) {
      free(s);
      return mr_error_set(err, STATUS_ERR_ARG,
                          "label %d of image %d is not one of the model's %d classes", labels[i], i,
                          k);
    }
    m->confusion[labels[i] * k + best]++;
    correct += best == labels[i];
  }
  m->accuracy = n ? (double)correct / n : 0.0;
  double recall_sum = 0.0, auc_sum = 0.0;
  int present = 0, auc_count = 0;
  for (int c = 0; c < k; c++) {
    int row = 0;
    for (int j = 0; j < k; j++) row += m->confusion[c * k + j];
    if (row) recall_sum += (double)m->confusion[c * k + c] / row, present++;
    for (int i = 0; i < n; i++) s[i] = (Scored){probs[(size_t)i * k + c], labels[i] == c};
    m->auc_per_class[c] = auc_binary(s, n);
    if (m->auc_per_class[c] >= 0) auc_sum += m->auc_per_class[c], auc_count++;
  }
  m->balanced_accuracy = present ? recall_sum / present : 0.0;
  int most = -1;
  for (int c = 0; c < k; c++) {
    int row = 0;
    for (int j = 0; j < k; j++) row += m->confusion[c * k + j];
    if (row > most) most = row, m->majority_class = c;
  }
  m->majority_share = n ? (double)most / n : 0.0;
  m->auc = k == 2 ? m->auc_per_class[1] : auc_count ? auc_sum / auc_count : -1.0;
  free(s);
  return STATUS_OK;
}

void confusion_rates(const int *confusion, int k, int c, double *sensitivity, double *specificity) {
  long total = 0, row = 0, col = 0;
  for (int i = 0; i < k * k; i++) total += confusion[i];
  for (int j = 0; j < k; j++) row += confusion[c * k + j], col += confusion[j * k + c];
  const long tp = confusion[c * k + c], negatives = total - row, fp = col - tp;
  *sensitivity = row ? (double)tp / row : -1.0;
  *specificity = negatives ? (double)(negatives - fp) / negatives : -1.0;
}

void metrics_free(Metrics *m) {
  free(m->confusion);
  m->confusion = NULL;
}

Status net_predict_dataset(Net *net, const Dataset *d, int batch, float *probs, MrError *err) {
  const ModelSpec *spec = net_spec(net);
  if (net_require_per_image(net, err) != STATUS_OK) return STATUS_ERR_ARG;
  if (d->c != spec->in_c || d->h != spec->in_h || d->w != spec->in_w)
    return mr_error_set(err, STATUS_ERR_SHAPE, "data is %dx%dx%d but the model takes %dx%dx%d",
                        d->c, d->h, d->w, spec->in_c, spec->in_h, spec->in_w);
  const size_t per = (size_t)d->c * d->h * d->w;
  const int k = net_num_classes(net);
  /* planned here so a failure says why; afterwards a non-finite probability is the model's */
  if (d->n && net_plan(net, d->n < batch ? d->n : batch, err) != STATUS_OK)
    return err && err->status != STATUS_OK ? err->status : STATUS_ERR_NOMEM;
  for (int start = 0; start < d->n; start += batch) {
    const int b = d->n - start < batch ? d->n - start : batch;
    float *p = probs + (size_t)start * k;
    net_predict(net, d->images + per * start, b, p);
    for (size_t j = 0; j < (size_t)b * k; j++)
      if (!isfinite(p[j]))
        return mr_error_set(err, STATUS_ERR_NAN,
                            "the model's output for image %d is not finite (a diverged model, "
                            "or non-finite pixels)",
                            start + (int)(j / (size_t)k));
  }
  return STATUS_OK;
}

Status data_match_model(DataSplits *d, const Net *net, MrError *err) {
  const ModelSpec *spec = net_spec(net);
  const int per_pixel = net_output_pixels(net) > 1;
  const Status task = data_require_task(d, net, "the data", err);
  if (task != STATUS_OK) return task;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    Dataset *ds = &d->split[s];
    if ((ds->h != spec->in_h || ds->w != spec->in_w) &&
        dataset_resize(ds, spec->in_h, spec->in_w, err) != STATUS_OK)
      return err ? err->status : STATUS_ERR_ARG;
    if (ds->c != spec->in_c && dataset_set_channels(ds, spec->in_c, err) != STATUS_OK)
      return err ? err->status : STATUS_ERR_ARG;
  }
  for (int s = 0; per_pixel && s < SPLIT_COUNT; s++) {
    const Dataset *ds = &d->split[s];
    for (size_t i = 0; i < (size_t)ds->n * ds->h * ds->w; i++)
      if (ds->masks[i] >= spec->n_classes) {
        char buf[64];
        const int img = (int)(i / ((size_t)ds->h * ds->w));
        return mr_error_set(err, STATUS_ERR_SHAPE,
                            "mask of %s (%s split) has label id %d but the model has %d classes",
                            dataset_image_id(ds, img, buf, sizeof buf), split_name((Split)s),
                            ds->masks[i], spec->n_classes);
      }
  }
  for (int s = 0; !per_pixel && s < SPLIT_COUNT; s++)
    for (int i = 0; i < d->split[s].n; i++)
      if (d->split[s].labels[i] >= spec->n_classes)
        return mr_error_set(err, STATUS_ERR_SHAPE,
                            "the data has class %d but the model only %d classes",
                            d->split[s].labels[i], spec->n_classes);
  return STATUS_OK;
}

int positive_class(const Net *net, const char *name) {
  if (net_num_classes(net) != 2) return -1;
  char buf[16];
  if (name) {
    for (int c = 0; c < 2; c++)
      if (strcasecmp(name, net_class_name(net, c, buf)) == 0) return c;
    return -1;
  }
  /* names that say "a finding": the class whose miss is a missed diagnosis */
  static const char *const findings[] = {"malignant", "pneumonia", "yes",      "tumor",
                                         "tumour",    "abnormal",  "positive", "cancer",
                                         "disease",   "lesion",    "covid",    "nodule"};
  for (int c = 0; c < 2; c++) {
    const char *n = net_class_name(net, c, buf);
    for (size_t f = 0; f < sizeof findings / sizeof findings[0]; f++)
      if (strcasestr(n, findings[f])) return c;
  }
  return 1;
}
