/* A 2-D view of penultimate-layer features: PCA fitted on the clean images,
 * with adversarial ones projected into the same axes, so a reader sees them
 * move across the decision boundary (paper 002 Fig. 3, paper 004 Fig. 5 use
 * t-SNE; PCA is chosen because it is exact, deterministic, fast on 2 cores
 * and, unlike t-SNE, places new points in an existing map). The top two
 * eigenvectors of the covariance come from LAPACK's dsyevr (in OpenBLAS). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

/* LAPACK's Fortran interface (OpenBLAS exports it; no header ships with it):
 * the trailing arguments are the hidden lengths of the character arguments. */
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
             const int *lda, const double *vl, const double *vu, const int *il, const int *iu,
             const double *abstol, int *m, double *w, double *z, const int *ldz, int *isuppz,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t,
             size_t, size_t);

Status pca_2d(const float *features, int n, int d, int n_fit, float *xy, double explained[2],
              MrError *err) {
  if (n_fit < 3 || n_fit > n || d < 2)
    return mr_error_set(err, STATUS_ERR_ARG, "PCA needs >= 3 fitted points of >= 2 features");
  double *mean = calloc(d, sizeof(double)), *centred = malloc(sizeof(double) * n_fit * d);
  double *cov = malloc(sizeof(double) * d * d), *vals = malloc(sizeof(double) * 2);
  double *vecs = malloc(sizeof(double) * d * 2);
  int *isuppz = malloc(sizeof(int) * 4);
  Status s = STATUS_OK;
  if (!mean || !centred || !cov || !vals || !vecs || !isuppz)
    s = mr_error_set(err, STATUS_ERR_NOMEM, "out of memory for PCA of %d x %d", n_fit, d);
  if (s == STATUS_OK) {
    for (int i = 0; i < n_fit; i++)
      for (int j = 0; j < d; j++) mean[j] += features[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= n_fit;
    for (int i = 0; i < n_fit; i++)
      for (int j = 0; j < d; j++)
        centred[(size_t)i * d + j] = features[(size_t)i * d + j] - mean[j];
    /* upper triangle (row-major) = lower in LAPACK's column-major view */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n_fit, 1.0 / (n_fit - 1), centred, d, 0.0,
                cov, d);
    double trace = 0;
    for (int j = 0; j < d; j++) trace += cov[(size_t)j * d + j];
    const int il = d - 1, iu = d, lwork_query = -1, liwork_query = -1;
    const double zero = 0, abstol = 0;
    int m = 0, info = 0, iwork_size = 0;
    double work_size = 0;
    dsyevr_("V", "I", "L", &d, cov, &d, &zero, &zero, &il, &iu, &abstol, &m, vals, vecs, &d, isuppz,
            &work_size, &lwork_query, &iwork_size, &liwork_query, &info, 1, 1, 1);
    const int lwork = (int)work_size, liwork = iwork_size;
    double *work = malloc(sizeof(double) * (lwork > 1 ? lwork : 1));
    int *iwork = malloc(sizeof(int) * (liwork > 1 ? liwork : 1));
    if (!work || !iwork || info != 0)
      s = mr_error_set(err, STATUS_ERR_NOMEM, "PCA: LAPACK workspace query failed (%d)", info);
    else
      dsyevr_("V", "I", "L", &d, cov, &d, &zero, &zero, &il, &iu, &abstol, &m, vals, vecs, &d,
              isuppz, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
    free(work), free(iwork);
    if (s == STATUS_OK && (info != 0 || m != 2))
      s = mr_error_set(err, STATUS_ERR_NAN, "PCA: the eigensolver failed (info %d)", info);
    if (s == STATUS_OK) {
      /* ascending order: the largest is the second */
      for (int a = 0; a < 2; a++) explained[a] = trace > 0 ? vals[1 - a] / trace : 0;
      for (int i = 0; i < n; i++)
        for (int a = 0; a < 2; a++) {
          const double *v = vecs + (size_t)(1 - a) * d;
          /* a fixed sign: the largest loading positive, so runs agree */
          int big = 0;
          for (int j = 1; j < d; j++)
            if (fabs(v[j]) > fabs(v[big])) big = j;
          double dot = 0;
          for (int j = 0; j < d; j++) dot += (features[(size_t)i * d + j] - mean[j]) * v[j];
          xy[(size_t)i * 2 + a] = (float)(v[big] < 0 ? -dot : dot);
        }
    }
  }
  free(mean), free(centred), free(cov), free(vals), free(vecs), free(isuppz);
  return s;
}
