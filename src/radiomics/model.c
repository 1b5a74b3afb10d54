/* Radiomics models: the classifiers radiomics studies use, on standardised,
 * filtered features. Selection ranks the features by how much of their
 * variance the classes explain (eta squared; r^2 for two classes), drops any
 * feature correlated above a threshold with a better one, and keeps at most N.
 * Training is LIBLINEAR's (Debian's liblinear): L2- or L1-regularised logistic
 * regression, or a linear SVM (L2-regularised hinge loss). The fitted
 * weights are copied out, so a model is a linear map from the selected
 * features to one logit per class, which the attacks differentiate.
 *
 * The file is JSON ("medrobust radiomics model 1"): the extraction settings,
 * the selected tags with their training mean and standard deviation, the
 * classifier, its (classes x features) weights and biases, the class names.
 * It is read as untrusted bytes: every size and number is checked. */
#include <cjson/cJSON.h>
#include <linear.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomicfile.h"
#include "../data/data.h"
#include "medrobust.h"

static const char *const classifier_names[RAD_CLASSIFIER_COUNT] = {"logistic-l2", "logistic-l1",
                                                                   "svm"};

const char *radiomics_classifier_name(RadiomicsClassifier c) {
  return c >= 0 && c < RAD_CLASSIFIER_COUNT ? classifier_names[c] : "?";
}

int radiomics_classifier_parse(const char *name) {
  for (int c = 0; c < RAD_CLASSIFIER_COUNT; c++)
    if (strcmp(name, classifier_names[c]) == 0) return c;
  return -1;
}

void radiomics_model_free(RadiomicsModel *m) {
  free(m->tags), free(m->mean), free(m->scale), free(m->weights), free(m->bias);
  for (int c = 0; m->class_names && c < m->k; c++) free(m->class_names[c]);
  free(m->class_names);
  memset(m, 0, sizeof *m);
}

static void quiet(const char *s) { (void)s; }

/* eta squared of feature column f: between-class over total sum of squares */
static double explained(const double *x, int n, int stride, int f, const int *y, int k) {
  double mean = 0, total = 0, between = 0;
  double *sum = calloc(k, sizeof(double));
  int *count = calloc(k, sizeof(int));
  if (!sum || !count) {
    free(sum), free(count);
    return 0;
  }
  for (int i = 0; i < n; i++)
    mean += x[(size_t)i * stride + f], sum[y[i]] += x[(size_t)i * stride + f], count[y[i]]++;
  mean /= n;
  for (int i = 0; i < n; i++) total += pow(x[(size_t)i * stride + f] - mean, 2);
  for (int c = 0; c < k; c++)
    if (count[c]) between += count[c] * pow(sum[c] / count[c] - mean, 2);
  free(sum), free(count);
  return total > 0 ? between / total : 0;
}

static double correlation(const double *x, int n, int stride, int a, int b) {
  double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < n; i++) ma += x[(size_t)i * stride + a], mb += x[(size_t)i * stride + b];
  ma /= n, mb /= n;
  for (int i = 0; i < n; i++) {
    const double da = x[(size_t)i * stride + a] - ma, db = x[(size_t)i * stride + b] - mb;
    sab += da * db, saa += da * da, sbb += db * db;
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

typedef struct {
  double score;
  int f;
} Ranked;

static int by_score(const void *a, const void *b) {
  const Ranked *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->f - y->f;
}

Status radiomics_model_train(const double *x, const char *const *tags, int n_features, const int *y,
                             int n, int k, const RadiomicsTrainOptions *o, RadiomicsModel *m,
                             MrError *err) {
  memset(m, 0, sizeof *m);
  if (n < 2 || k < 2)
    return mr_error_set(err, STATUS_ERR_ARG, "radiomics: %d images of %d classes: nothing to learn",
                        n, k);
  for (int i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= k)
      return mr_error_set(err, STATUS_ERR_ARG, "radiomics: image %d has class %d, not one of %d", i,
                          y[i], k);
  /* usable features: finite in every image, not constant */
  Ranked *rank = malloc(sizeof(Ranked) * (n_features + 1));
  int *keep = malloc(sizeof(int) * (n_features + 1));
  if (!rank || !keep) {
    free(rank), free(keep);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  }
  int usable = 0;
  for (int f = 0; f < n_features; f++) {
    double lo = INFINITY, hi = -INFINITY;
    int finite = 1;
    for (int i = 0; i < n && finite; i++) {
      const double v = x[(size_t)i * n_features + f];
      finite = isfinite(v);
      lo = fmin(lo, v), hi = fmax(hi, v);
    }
    if (finite && hi - lo > 1e-12 * fmax(1, fabs(hi)))
      rank[usable++] = (Ranked){explained(x, n, n_features, f, y, k), f};
  }
  qsort(rank, usable, sizeof *rank, by_score);
  int selected = 0;
  for (int r = 0; r < usable && selected < o->max_features; r++) {
    int redundant = 0;
    for (int s = 0; s < selected && !redundant; s++)
      redundant = fabs(correlation(x, n, n_features, rank[r].f, keep[s])) > o->max_correlation;
    if (!redundant) keep[selected++] = rank[r].f;
  }
  free(rank);
  if (!selected) {
    free(keep);
    return mr_error_set(err, STATUS_ERR_ARG,
                        "radiomics: no feature varies across the training images");
  }
  m->n_features = selected, m->k = k, m->classifier = o->classifier;
  m->tags = calloc(selected, sizeof *m->tags);
  m->mean = calloc(selected, sizeof(double)), m->scale = calloc(selected, sizeof(double));
  m->weights = calloc((size_t)k * selected, sizeof(double)), m->bias = calloc(k, sizeof(double));
  double *z = malloc(sizeof(double) * (size_t)n * selected);
  struct feature_node *nodes = malloc(sizeof(struct feature_node) * (size_t)n * (selected + 2));
  struct feature_node **rows = malloc(sizeof *rows * n);
  double *labels = malloc(sizeof(double) * n);
  Status st =
      m->tags && m->mean && m->scale && m->weights && m->bias && z && nodes && rows && labels
          ? STATUS_OK
          : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int s = 0; st == STATUS_OK && s < selected; s++) {
    const int f = keep[s];
    snprintf(m->tags[s], sizeof m->tags[s], "%s", tags[f]);
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += x[(size_t)i * n_features + f];
    mean /= n;
    for (int i = 0; i < n; i++) var += pow(x[(size_t)i * n_features + f] - mean, 2);
    m->mean[s] = mean, m->scale[s] = sqrt(var / n);
    for (int i = 0; i < n; i++)
      z[(size_t)i * selected + s] = (x[(size_t)i * n_features + f] - mean) / m->scale[s];
  }
  struct model *fit = NULL;
  if (st == STATUS_OK) {
    for (int i = 0; i < n; i++) {
      struct feature_node *row = nodes + (size_t)i * (selected + 2);
      for (int s = 0; s < selected; s++)
        row[s] = (struct feature_node){s + 1, z[(size_t)i * selected + s]};
      row[selected] = (struct feature_node){selected + 1, 1.0}; /* the bias feature */
      row[selected + 1] = (struct feature_node){-1, 0};
      rows[i] = row, labels[i] = y[i];
    }
    const struct problem prob = {n, selected + 1, labels, rows, 1.0};
    const int solver = o->classifier == RAD_LOGISTIC_L1  ? L1R_LR
                       : o->classifier == RAD_LINEAR_SVM ? L2R_L1LOSS_SVC_DUAL
                                                         : L2R_LR;
    struct parameter param = {.solver_type = solver, .eps = 0.01, .C = o->c};
    set_print_string_function(quiet);
    const char *why = check_parameter(&prob, &param);
    if (why) st = mr_error_set(err, STATUS_ERR_ARG, "radiomics: LIBLINEAR: %s", why);
    if (st == STATUS_OK && !(fit = train(&prob, &param)))
      st = mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: LIBLINEAR could not train");
  }
  if (st == STATUS_OK) {
    /* LIBLINEAR's decision values, per its label order, as one logit per class */
    int labels_of[MR_MAX_CLASSES];
    get_labels(fit, labels_of);
    const int nr = get_nr_class(fit);
    for (int s = 0; s <= selected; s++) {
      if (nr == 2) {
        /* one value, for labels_of[0]: class labels_of[0] gets it, the other 0 */
        const double w = get_decfun_coef(fit, s + 1, 0);
        for (int c = 0; c < k; c++) {
          const double v = c == labels_of[0] ? w : c == labels_of[1] ? 0 : -INFINITY;
          if (s < selected)
            m->weights[(size_t)c * selected + s] = isfinite(v) ? v : 0;
          else
            m->bias[c] = v;
        }
      } else {
        for (int l = 0; l < nr; l++) {
          const double w = get_decfun_coef(fit, s + 1, l);
          if (s < selected)
            m->weights[(size_t)labels_of[l] * selected + s] = w;
          else
            m->bias[labels_of[l]] = w;
        }
      }
    }
    /* classes LIBLINEAR never saw (absent from the training images) never win */
    for (int c = 0; c < k; c++) {
      int seen = 0;
      for (int l = 0; l < nr; l++) seen |= labels_of[l] == c;
      if (!seen) m->bias[c] = -1e30;
    }
    free_and_destroy_model(&fit);
  }
  free(keep), free(z), free(nodes), free(rows), free(labels);
  if (st != STATUS_OK) radiomics_model_free(m);
  return st;
}

Status radiomics_model_logits(const RadiomicsModel *m, const RadiomicsFeatures *f, double *z,
                              MrError *err) {
  for (int c = 0; c < m->k; c++) z[c] = m->bias[c];
  for (int s = 0; s < m->n_features; s++) {
    const RadiomicsFeature *v = radiomics_find(f, m->tags[s]);
    if (!v)
      return mr_error_set(err, STATUS_ERR_ARG, "radiomics: the model needs feature %s", m->tags[s]);
    const double u = (v->value - m->mean[s]) / m->scale[s];
    if (!isfinite(u))
      return mr_error_set(err, STATUS_ERR_NAN, "radiomics: feature %s is %g for this image",
                          m->tags[s], v->value);
    for (int c = 0; c < m->k; c++) z[c] += m->weights[(size_t)c * m->n_features + s] * u;
  }
  return STATUS_OK;
}

void radiomics_softmax(const double *z, int k, float *p) {
  double mx = -INFINITY, sum = 0;
  for (int c = 0; c < k; c++) mx = fmax(mx, z[c]);
  for (int c = 0; c < k; c++) sum += exp(z[c] - mx);
  for (int c = 0; c < k; c++) p[c] = (float)(exp(z[c] - mx) / sum);
}

/* ---- the file ------------------------------------------------------------- */

static cJSON *numbers(const double *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
  return a;
}

Status radiomics_model_save(const RadiomicsModel *m, const char *path, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "format", "medrobust radiomics model 1");
  cJSON *ex = cJSON_AddObjectToObject(root, "extraction");
  const RadiomicsOptions *o = &m->setup.extraction;
  cJSON_AddStringToObject(ex, "binning",
                          o->binning == RAD_BIN_NONE    ? "none"
                          : o->binning == RAD_BIN_COUNT ? "count"
                                                        : "width");
  cJSON_AddNumberToObject(ex, "bin_count", o->bin_count);
  cJSON_AddNumberToObject(ex, "bin_width", o->bin_width);
  if (isfinite(o->bin_min)) cJSON_AddNumberToObject(ex, "bin_min", o->bin_min);
  if (isfinite(o->reseg_min)) cJSON_AddNumberToObject(ex, "reseg_min", o->reseg_min);
  if (isfinite(o->reseg_max)) cJSON_AddNumberToObject(ex, "reseg_max", o->reseg_max);
  if (o->resample > 0) cJSON_AddNumberToObject(ex, "resample", o->resample);
  cJSON_AddNumberToObject(ex, "roi_label", m->setup.roi_label);
  cJSON_AddBoolToObject(ex, "whole_image", m->setup.whole_image);
  cJSON_AddNumberToObject(ex, "spacing", m->setup.spacing);
  cJSON_AddStringToObject(root, "classifier", radiomics_classifier_name(m->classifier));
  cJSON *tags = cJSON_AddArrayToObject(root, "features");
  for (int s = 0; s < m->n_features; s++)
    cJSON_AddItemToArray(tags, cJSON_CreateString(m->tags[s]));
  cJSON_AddItemToObject(root, "mean", numbers(m->mean, m->n_features));
  cJSON_AddItemToObject(root, "scale", numbers(m->scale, m->n_features));
  cJSON *w = cJSON_AddArrayToObject(root, "weights");
  for (int c = 0; c < m->k; c++)
    cJSON_AddItemToArray(w, numbers(m->weights + (size_t)c * m->n_features, m->n_features));
  cJSON_AddItemToObject(root, "bias", numbers(m->bias, m->k));
  cJSON *names = cJSON_AddArrayToObject(root, "classes");
  for (int c = 0; c < m->k; c++)
    cJSON_AddItemToArray(
        names, cJSON_CreateString(m->class_names && m->class_names[c] ? m->class_names[c] : ""));
  cJSON_AddStringToObject(root, "training", m->training);
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory writing %s", path);
  AtomicFile af;
  Status s = atomic_open(&af, path, "w", err);
  if (s == STATUS_OK) {
    fputs(text, af.f);
    fputc('\n', af.f);
    s = atomic_commit(&af, err);
  }
  free(text);
  return s;
}

/* n finite numbers from a JSON array of exactly n */
static int read_numbers(const cJSON *a, double *out, int n) {
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return 0;
  int i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, a) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return 0;
    out[i++] = v->valuedouble;
  }
  return 1;
}

Status radiomics_model_load(const char *path, RadiomicsModel *m, MrError *err) {
  memset(m, 0, sizeof *m);
  size_t len = 0;
  uint8_t *bytes = file_read_all(path, (size_t)64 << 20, &len, err);
  if (!bytes) return err->status;
  cJSON *root = cJSON_ParseWithLength((const char *)bytes, len);
  free(bytes);
  const cJSON *format = cJSON_GetObjectItem(root, "format");
  if (!root || !cJSON_IsString(format) ||
      strcmp(format->valuestring, "medrobust radiomics model 1")) {
    cJSON_Delete(root);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a medrobust radiomics model", path);
  }
  const char *why = NULL;
  const cJSON *tags = cJSON_GetObjectItem(root, "features"),
              *w = cJSON_GetObjectItem(root, "weights");
  const cJSON *classes = cJSON_GetObjectItem(root, "classes"),
              *ex = cJSON_GetObjectItem(root, "extraction");
  const cJSON *classifier = cJSON_GetObjectItem(root, "classifier");
  const int nf = cJSON_GetArraySize(tags), k = cJSON_GetArraySize(classes);
  if (!cJSON_IsArray(tags) || nf < 1 || nf > 100000)
    why = "its feature list is missing or empty";
  else if (!cJSON_IsArray(classes) || k < 2 || k > MR_MAX_CLASSES)
    why = "it lists fewer than 2 classes";
  else if (!cJSON_IsArray(w) || cJSON_GetArraySize(w) != k)
    why = "its weights do not have a row per class";
  else if (!cJSON_IsObject(ex))
    why = "its extraction settings are missing";
  else if (!cJSON_IsString(classifier) || radiomics_classifier_parse(classifier->valuestring) < 0)
    why = "its classifier is not logistic-l2, logistic-l1 or svm";
  if (!why) {
    m->n_features = nf, m->k = k,
    m->classifier = radiomics_classifier_parse(classifier->valuestring);
    m->tags = calloc(nf, sizeof *m->tags);
    m->mean = calloc(nf, sizeof(double)), m->scale = calloc(nf, sizeof(double));
    m->weights = calloc((size_t)k * nf, sizeof(double)), m->bias = calloc(k, sizeof(double));
    m->class_names = calloc(k, sizeof(char *));
    if (!m->tags || !m->mean || !m->scale || !m->weights || !m->bias || !m->class_names)
      why = "out of memory";
  }
  int i = 0;
  const cJSON *v;
  if (!why) cJSON_ArrayForEach(v, tags) {
      if (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof m->tags[0])
        why = "a feature tag is not a short string";
      else
        snprintf(m->tags[i++], sizeof m->tags[0], "%s", v->valuestring);
    }
  if (!why && (!read_numbers(cJSON_GetObjectItem(root, "mean"), m->mean, nf) ||
               !read_numbers(cJSON_GetObjectItem(root, "scale"), m->scale, nf) ||
               !read_numbers(cJSON_GetObjectItem(root, "bias"), m->bias, k)))
    why = "its mean, scale or bias is not a list of finite numbers of the right length";
  for (int s = 0; !why && s < nf; s++)
    if (!(m->scale[s] > 0)) why = "a feature scale is not positive";
  i = 0;
  if (!why) cJSON_ArrayForEach(v, w) {
      if (!why && !read_numbers(v, m->weights + (size_t)i++ * nf, nf))
        why = "a weight row is not a list of finite numbers, one per feature";
    }
  i = 0;
  if (!why) cJSON_ArrayForEach(v, classes) {
      m->class_names[i++] = strdup(cJSON_IsString(v) ? v->valuestring : "");
    }
  if (!why) {
    RadiomicsOptions *o = &m->setup.extraction;
    *o = radiomics_options_default();
    const cJSON *binning = cJSON_GetObjectItem(ex, "binning"), *x;
    const char *b = cJSON_IsString(binning) ? binning->valuestring : "";
    o->binning = !strcmp(b, "none")    ? RAD_BIN_NONE
                 : !strcmp(b, "width") ? RAD_BIN_WIDTH
                                       : RAD_BIN_COUNT;
    if (strcmp(b, "none") && strcmp(b, "width") && strcmp(b, "count"))
      why = "its binning is not none, count or width";
    if ((x = cJSON_GetObjectItem(ex, "bin_count")) && cJSON_IsNumber(x)) o->bin_count = x->valueint;
    if ((x = cJSON_GetObjectItem(ex, "bin_width")) && cJSON_IsNumber(x))
      o->bin_width = x->valuedouble;
    if ((x = cJSON_GetObjectItem(ex, "bin_min")) && cJSON_IsNumber(x)) o->bin_min = x->valuedouble;
    if ((x = cJSON_GetObjectItem(ex, "reseg_min")) && cJSON_IsNumber(x))
      o->reseg_min = x->valuedouble;
    if ((x = cJSON_GetObjectItem(ex, "reseg_max")) && cJSON_IsNumber(x))
      o->reseg_max = x->valuedouble;
    if ((x = cJSON_GetObjectItem(ex, "resample")) && cJSON_IsNumber(x))
      o->resample = x->valuedouble;
    m->setup.roi_label =
        (x = cJSON_GetObjectItem(ex, "roi_label")) && cJSON_IsNumber(x) ? x->valueint : -1;
    m->setup.whole_image = cJSON_IsTrue(cJSON_GetObjectItem(ex, "whole_image"));
    m->setup.spacing =
        (x = cJSON_GetObjectItem(ex, "spacing")) && cJSON_IsNumber(x) ? x->valuedouble : 1;
    if (!why && (o->bin_count < 1 || o->bin_count > 1024 || !(o->bin_width > 0) ||
                 !(m->setup.spacing > 0) || !(o->resample >= 0 && o->resample <= 1e4) ||
                 m->setup.roi_label < -1 || m->setup.roi_label >= MR_MAX_CLASSES))
      why = "its extraction settings are out of range";
    const cJSON *t = cJSON_GetObjectItem(root, "training");
    snprintf(m->training, sizeof m->training, "%s", cJSON_IsString(t) ? t->valuestring : "");
  }
  cJSON_Delete(root);
  if (why) {
    radiomics_model_free(m);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s", path, why);
  }
  return STATUS_OK;
}
