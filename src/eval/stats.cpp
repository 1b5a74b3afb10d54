/* The distributions randomized smoothing needs (Cohen et al. 2019), from Boost.Math: the
 * one-sided Clopper-Pearson bound (a beta quantile), the normal quantile and the exact
 * two-sided binomial test. Boost because these quantiles are where hand-written continued
 * fractions lose digits at n = 100000 and alpha = 0.001; Boost.Math is accurate to a few ulps
 * there and header-only (Debian's libboost-dev). The C side calls the extern "C" wrappers. */
#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/binomial.hpp>
#include <boost/math/distributions/normal.hpp>
#include <cmath>

#include "medrobust.h"

/* Errors become NaN: every argument the callers pass is checked first, so a NaN here means
 * a bug, and the caller's finiteness checks report it. */
typedef boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::ignore_error>,
    boost::math::policies::overflow_error<boost::math::policies::ignore_error>,
    boost::math::policies::evaluation_error<boost::math::policies::ignore_error>>
    QuietPolicy;

extern "C" double clopper_pearson_lower(long k, long n, double alpha) {
  if (n <= 0 || k < 0 || k > n || !(alpha > 0 && alpha < 1)) return NAN;
  if (k == 0) return 0.0;
  boost::math::beta_distribution<double, QuietPolicy> b((double)k, (double)(n - k + 1));
  return boost::math::quantile(b, alpha);
}

extern "C" double normal_quantile(double p) {
  if (!(p > 0 && p < 1)) return p == 1 ? INFINITY : p == 0 ? -INFINITY : NAN;
  boost::math::normal_distribution<double, QuietPolicy> z;
  return boost::math::quantile(z, p);
}

extern "C" double binomial_test_half(long k, long n) {
  if (n <= 0 || k < 0 || k > n) return NAN;
  /* symmetric at 1/2: twice the smaller tail, capped at 1 (scipy's binom_test) */
  const long low = k < n - k ? k : n - k;
  if (2 * low == n) return 1.0;
  boost::math::binomial_distribution<double, QuietPolicy> b((double)n, 0.5);
  const double p = 2.0 * boost::math::cdf(b, (double)low);
  return p < 1.0 ? p : 1.0;
}
