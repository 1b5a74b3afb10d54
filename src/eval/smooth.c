/* Certified robustness by randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019): the
 * smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), its CERTIFY
 * (a class and an L2 radius within which g provably does not change, wrong with probability
 * at most alpha) and its PREDICT (a class or abstention), as the paper's pseudocode. Noise is
 * added to the [0,1] pixels before the model's normalisation and not clipped, as the paper's
 * code does.
 *
 * Image i's noise comes from stream i of the seed, and noisy copy j from sub-stream j of
 * that, so a certificate depends only on (seed, image index): not on the batch size, the
 * thread count or which process computed it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

SmoothOptions smooth_options_default(void) {
  return (SmoothOptions){
      .sigma = 0.25f, .n0 = 100, .n = 100000, .alpha = 0.001, .batch = 400, .seed = 1};
}

/* CERTIFY's selection samples and its estimation samples must be independent: they take
 * disjoint sub-streams. */
#define ESTIMATION_FIRST (1ULL << 40)

typedef struct {
  Net *net;
  float sigma;
  int batch, k, per;
  float *noisy, *probs;
  long *counts; /* per class */
} Sampler;

static Status sampler_init(Sampler *s, Net *net, const SmoothOptions *o, MrError *err) {
  memset(s, 0, sizeof *s);
  Status st = net_require_per_image(net, err);
  if (st != STATUS_OK) return st;
  if (!(o->sigma > 0) || !isfinite(o->sigma) || o->n0 < 1 || o->n < 1 || o->batch < 1 ||
      !(o->alpha > 0 && o->alpha < 1))
    return mr_error_set(err, STATUS_ERR_ARG,
                        "smoothing needs sigma > 0, n0 and n >= 1, a batch >= 1 and alpha in "
                        "(0,1); got sigma %g, n0 %d, n %ld, batch %d, alpha %g",
                        o->sigma, o->n0, o->n, o->batch, o->alpha);
  s->net = net, s->sigma = o->sigma, s->batch = o->batch;
  s->k = net_num_classes(net), s->per = net_input_size(net);
  s->noisy = malloc(sizeof(float) * (size_t)s->batch * s->per);
  s->probs = malloc(sizeof(float) * (size_t)s->batch * s->k);
  s->counts = calloc((size_t)s->k, sizeof(long));
  if (!s->noisy || !s->probs || !s->counts) {
    free(s->noisy), free(s->probs), free(s->counts);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for %d noisy copies", s->batch);
  }
  return STATUS_OK;
}

static void sampler_free(Sampler *s) { free(s->noisy), free(s->probs), free(s->counts); }

/* The seed of image `index`'s sub-streams. */
static uint64_t image_seed(const SmoothOptions *o, uint64_t index) {
  Rng r;
  rng_seed_stream(&r, o->seed, index);
  return rng_next(&r);
}

/* counts[c] += how many of `num` noisy copies of x (sub-streams first..first+num-1) the base
 * model puts in class c. Every forward pass has the full batch (unused rows repeat the last
 * copy), so the net is planned once. */
static Status sample_counts(Sampler *s, const float *x, uint64_t seed, uint64_t first, long num,
                            long *counts, MrError *err) {
  for (long done = 0; done < num; done += s->batch) {
    const int b = num - done < s->batch ? (int)(num - done) : s->batch;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < s->batch; i++) {
      float *dst = s->noisy + (size_t)i * s->per;
      if (i >= b) { /* padding: a copy nobody counts */
        memcpy(dst, s->noisy, sizeof(float) * s->per);
        continue;
      }
      Rng r;
      rng_seed_stream(&r, seed, first + (uint64_t)done + (uint64_t)i);
      for (int p = 0; p < s->per; p++) dst[p] = x[p] + s->sigma * rng_normal(&r);
    }
    net_predict(s->net, s->noisy, s->batch, s->probs);
    for (int i = 0; i < b; i++) {
      const float *p = s->probs + (size_t)i * s->k;
      const int best = argmax(p, s->k);
      if (!isfinite(p[best]))
        return mr_error_set(err, STATUS_ERR_NAN,
                            "the model's output is not finite on a noisy copy (sigma %g)",
                            s->sigma);
      counts[best]++;
    }
  }
  return STATUS_OK;
}

static int top_class(const long *counts, int k) {
  int best = 0;
  for (int c = 1; c < k; c++)
    if (counts[c] > counts[best]) best = c;
  return best;
}

Status smooth_certify(Net *net, const SmoothOptions *o, const float *x, uint64_t index,
                      SmoothCertificate *out, MrError *err) {
  Sampler s;
  Status st = sampler_init(&s, net, o, err);
  if (st != STATUS_OK) return st;
  long *counts = s.counts;
  const uint64_t seed = image_seed(o, index);
  /* c_A from the n0 selection samples, its count from n independent ones */
  st = sample_counts(&s, x, seed, 0, o->n0, counts, err);
  const int selected = top_class(counts, s.k);
  memset(counts, 0, sizeof(long) * s.k);
  if (st == STATUS_OK) st = sample_counts(&s, x, seed, ESTIMATION_FIRST, o->n, counts, err);
  if (st == STATUS_OK) {
    const double p_lower = clopper_pearson_lower(counts[selected], o->n, o->alpha);
    *out = (SmoothCertificate){.selected = selected, .count = counts[selected], .p_lower = p_lower};
    if (p_lower > 0.5) {
      out->predicted = selected;
      out->radius = o->sigma * normal_quantile(p_lower);
    } else {
      out->predicted = SMOOTH_ABSTAIN;
      out->radius = 0.0;
    }
  }
  sampler_free(&s);
  return st;
}

Status smooth_predict(Net *net, const SmoothOptions *o, const float *x, uint64_t index,
                      int *predicted, MrError *err) {
  Sampler s;
  Status st = sampler_init(&s, net, o, err);
  if (st != STATUS_OK) return st;
  long *counts = s.counts;
  st = sample_counts(&s, x, image_seed(o, index), 0, o->n, counts, err);
  if (st == STATUS_OK) {
    /* the top two counts; a tie tests as p = 1 and abstains */
    const int a = top_class(counts, s.k);
    long second = 0;
    for (int c = 0; c < s.k; c++)
      if (c != a && counts[c] > second) second = counts[c];
    const long n_a = counts[a];
    *predicted = binomial_test_half(n_a, n_a + second) <= o->alpha ? a : SMOOTH_ABSTAIN;
  }
  sampler_free(&s);
  return st;
}

double smooth_certified_accuracy(const SmoothCertificate *c, const int *labels, int n,
                                 double radius) {
  int right = 0, labelled = 0;
  for (int i = 0; i < n; i++) {
    if (labels[i] < 0) continue;
    labelled++;
    right += c[i].predicted == labels[i] && c[i].radius >= radius;
  }
  return labelled ? (double)right / labelled : 0.0;
}
