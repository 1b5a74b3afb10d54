/* The radiomics sections of report.html: accuracy of the radiomics model
 * against eps (beside the CNN's, when a CNN sweep sits in the same folder),
 * the features the attack moved most, example image / mask / perturbation,
 * and the stability table (ICC under noise vs under attack). Rendered from
 * radiomics_attack.json and radiomics_stability.json only. */
#include <math.h>
#include <string.h>

#include "report.h"

static double number(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* the CNN's accuracy per eps for one attack of a results.json sweep, into s */
static void cnn_series(const cJSON *results, const char *attack, Series *s) {
  const cJSON *row;
  s->y[0] = number(results, "clean_accuracy"), s->x[0] = 0, s->n = 1;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(results, "rows")) {
    if (strcmp(report_str(row, "attack"), attack) != 0 || s->n >= 64) continue;
    s->x[s->n] = number(row, "eps"), s->y[s->n] = number(row, "accuracy");
    s->n++;
  }
}

static void attack_section(FILE *o, const char *dir, const cJSON *a, const cJSON *cnn) {
  const cJSON *rows = cJSON_GetObjectItem(a, "rows"), *row;
  fprintf(o,
          "<h2 id='radiomics'>Radiomics under attack</h2><p>A radiomics model (IBSI features "
          "of each image in its own mask, the mask left as drawn, into a linear classifier) "
          "attacked query-only on the exact features by %s with at most %.0f queries per "
          "image, pixels changed: %s%s. This is the threat the perspective paper names: a "
          "hand-crafted feature pipeline moved like a CNN.</p>\n",
          report_html(report_str(a, "attack")), number(a, "query_budget"),
          report_html(report_str(a, "region")),
          number(a, "target") >= 0 ? ", targeted at one class" : "");
  Series s[3] = {{.name = "radiomics model"}};
  int ns = 1;
  cJSON_ArrayForEach(row, rows) {
    if (s[0].n == 0) s[0].x[0] = 0, s[0].y[0] = number(row, "clean_accuracy"), s[0].n = 1;
    if (s[0].n < 64)
      s[0].x[s[0].n] = number(row, "eps"), s[0].y[s[0].n++] = number(row, "accuracy");
  }
  if (cnn) {
    static const char *const kinds[2] = {"square", "pgd"};
    for (int k = 0; k < 2; k++) {
      Series c = {.name = k ? "CNN, PGD (white-box)" : "CNN, Square"};
      cnn_series(cnn, kinds[k], &c);
      if (c.n > 1) s[ns++] = c;
    }
  }
  const Chart chart = {
      "Accuracy under attack", "eps (L-inf, [0,1] pixels)", "accuracy", 0, 0, 0, NULL};
  report_svg_chart(o, &chart, s, ns);
  fprintf(o,
          "<table><tr><th>eps</th><th>images</th><th>clean</th><th>balanced</th>"
          "<th>attacked</th><th>balanced</th><th>success</th><th>mean queries</th></tr>\n");
  cJSON_ArrayForEach(row, rows)
      fprintf(o,
              "<tr><td>%.4g</td><td>%.0f</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td>"
              "<td>%.1f%%</td><td>%.1f%%</td><td>%.0f</td></tr>\n",
              number(row, "eps"), number(row, "images"), 100 * number(row, "clean_accuracy"),
              100 * number(row, "clean_balanced_accuracy"), 100 * number(row, "accuracy"),
              100 * number(row, "balanced_accuracy"), 100 * number(row, "success_rate"),
              number(row, "mean_queries"));
  fprintf(o, "</table>\n");
  /* the features the largest eps moved most */
  const cJSON *last = cJSON_GetArrayItem(rows, cJSON_GetArraySize(rows) - 1);
  const cJSON *moved = cJSON_GetObjectItem(last, "feature_change_sd");
  const int n = cJSON_GetArraySize(moved);
  if (n > 0) {
    fprintf(o,
            "<p>The model's features the attack moved most at eps %.4g (mean change, in "
            "training standard deviations):</p><table><tr><th>feature</th><th>change</th></tr>",
            number(last, "eps"));
    unsigned char shown[256] = {0};
    for (int r = 0; r < 8 && r < n && n <= 256; r++) {
      int best = -1;
      for (int i = 0; i < n; i++)
        if (!shown[i] &&
            (best < 0 || number(cJSON_GetArrayItem(moved, i), "mean_abs_change") >
                             number(cJSON_GetArrayItem(moved, best), "mean_abs_change")))
          best = i;
      shown[best] = 1;
      const cJSON *f = cJSON_GetArrayItem(moved, best);
      fprintf(o, "<tr><td><code>%s</code></td><td>%.3f</td></tr>",
              report_html(report_str(f, "feature")), number(f, "mean_abs_change"));
    }
    fprintf(o, "</table>\n");
  }
  const cJSON *examples = cJSON_GetObjectItem(a, "examples"), *e;
  if (cJSON_GetArraySize(examples) > 0) {
    fprintf(o,
            "<p>Examples at the largest eps: the image, its ROI, the attacked image and the "
            "perturbation amplified to full contrast.</p><table><tr><th>image</th><th>ROI</th>"
            "<th>attacked</th><th>perturbation</th></tr>\n");
    cJSON_ArrayForEach(e, examples) {
      static const char *const keys[4] = {"clean_png", "mask_png", "adversarial_png", "diff_png"};
      fprintf(o, "<tr>");
      for (int k = 0; k < 4; k++) {
        fprintf(o, "<td>");
        report_img(o, dir, report_str(e, keys[k]), keys[k], "mid");
        if (k == 0 || k == 2)
          fprintf(o, "<br>%s",
                  report_html(report_str(e, k ? "adversarial_prediction" : "clean_prediction")));
        fprintf(o, "</td>");
      }
      fprintf(o, "</tr>\n");
    }
    fprintf(o, "</table>\n");
  }
}

static void stability_section(FILE *o, const cJSON *st) {
  fprintf(o,
          "<h2 id='radiomics-stability'>Adversarial vs irreproducible</h2><p>For each IBSI "
          "feature, ICC(3,1) between its clean values and its values on perturbed images (%.0f "
          "images): realistic noise at the SSIM of each image's adversarial example (mean SSIM "
          "%.4f), and the adversarial example itself. An ICC below 0.75 is commonly read as "
          "poor to moderate reliability.</p><table><tr><th>perturbation</th><th>median ICC</th>"
          "<th>features with ICC &lt; 0.75</th><th>of the model's</th></tr>\n",
          number(st, "images"), number(st, "mean_ssim"));
  const cJSON *row;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(st, "summary")) fprintf(
      o, "<tr><td>%s</td><td>%.3f</td><td>%.0f of %.0f</td><td>%.0f of %.0f</td></tr>\n",
      report_html(report_str(row, "perturbation")), number(row, "median_icc"), number(row, "poor"),
      number(row, "features"), number(row, "poor_in_model"), number(row, "in_model"));
  fprintf(o, "</table>\n");
}

void report_radiomics_sections(FILE *o, const char *dir, const cJSON *attack, const cJSON *cnn,
                               const cJSON *stability) {
  if (attack) attack_section(o, dir, attack, cnn);
  if (stability) stability_section(o, stability);
}
