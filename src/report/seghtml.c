/* The report's segmentation sections, from seg_results.json (eval),
 * seg_examples.json and seg_compare.json (compare): a verdict in plain words,
 * paper 002's Table 1 (clean, Rician at the adversarial SSIM, adversarial
 * average, % drop), every attack row, Dice against eps, the overlays, and the
 * Table 2 transfer matrices. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

static double num(const cJSON *o, const char *k) { return report_num(o, k); }

static const char *str(const cJSON *o, const char *k) { return report_str(o, k); }
/* a JSON string escaped for printing into the page: the JSON is untrusted */
static const char *hstr(const cJSON *o, const char *k) { return report_html(report_str(o, k)); }

static void cell(FILE *o, double v, int digits) {
  if (isnan(v))
    fprintf(o, "<td>-</td>");
  else
    fprintf(o, "<td>%.*f</td>", digits, v);
}

/* eps with its size in grey levels of the stored data, or "unbounded" */
static void eps_cell(FILE *o, double eps, double bits) {
  if (!(eps > 0)) {
    fprintf(o, "<td>unbounded</td>");
    return;
  }
  char text[48];
  eps_describe((float)eps, bits > 0 && bits <= 32 ? (int)bits : 0, text, sizeof text);
  fprintf(o, "<td>%s</td>", text);
}

static void verdict(FILE *o, const cJSON *r) {
  const cJSON *clean = cJSON_GetObjectItem(r, "clean"), *t1 = cJSON_GetObjectItem(r, "table1");
  const cJSON *row, *worst = NULL, *worst_grad = NULL;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(r, "rows")) {
    if (!worst || num(row, "dice") < num(worst, "dice")) worst = row;
    if (!str(row, "dag_target")[0] && (!worst_grad || num(row, "dice") < num(worst_grad, "dice")))
      worst_grad = row;
  }
  fprintf(o, "<div class='headline'><p class='deploy'>Segmentation: clean Dice %.3f",
          num(clean, "dice"));
  if (worst) {
    fprintf(o, "; under <b>");
    report_esc(o, str(worst, "attack"));
    fprintf(o, "</b> it falls to <b>%.3f</b> (%.1f%% drop).</p>", num(worst, "dice"),
            num(worst, "drop_pct"));
  } else {
    fprintf(o, ".</p>");
  }
  if (worst_grad) {
    char eps[48];
    const double bits = num(r, "bits");
    eps_describe((float)num(worst_grad, "eps"), bits > 0 && bits <= 32 ? (int)bits : 0, eps,
                 sizeof eps);
    fprintf(o, "<p>A bounded attack, ");
    report_esc(o, str(worst_grad, "attack"));
    fprintf(o,
            " at L-inf eps %s, leaves Dice %.3f; its prediction agrees with the clean one at "
            "Dice %.3f.</p>",
            eps, num(worst_grad, "dice"), num(worst_grad, "dice_vs_clean"));
  }
  if (!isnan(num(t1, "rician")))
    fprintf(o,
            "<p>Rician noise as visible as the attacks (the same mean SSIM) leaves Dice %.3f, "
            "against %.3f on average under them: %s</p>",
            num(t1, "rician"), num(t1, "adversarial_mean"),
            num(t1, "rician") - num(t1, "adversarial_mean") > 0.05
                ? "the damage is adversarial, not what noise of that size does."
                : "here noise of that size does about as much damage.");
  fprintf(o, "</div>\n");
}

static void section_results(FILE *o, const cJSON *r) {
  const cJSON *t1 = cJSON_GetObjectItem(r, "table1"), *row;
  fprintf(o, "<p>Model <code>");
  report_esc(o, str(r, "model"));
  fprintf(o, "</code> on <code>");
  report_esc(o, str(r, "data"));
  fprintf(o, "</code> (%s split, %.0f images). Dice: ", hstr(r, "split"), num(r, "images"));
  report_esc(o, str(r, "dice_convention"));
  fprintf(o,
          ".</p><h3>Paper 002 Table 1 (segmentation)</h3><div class='scroll'><table><tr>"
          "<th>clean</th><th>Rician noise</th><th>adversarial average</th><th>%% drop</th></tr>"
          "<tr>");
  cell(o, num(t1, "clean"), 3);
  cell(o, num(t1, "rician"), 3);
  cell(o, num(t1, "adversarial_mean"), 3);
  cell(o, num(t1, "drop_pct"), 2);
  fprintf(o,
          "</tr></table></div><p class='grey'>The adversarial average is over DAG's target "
          "types when DAG ran, else over every attack row; the noise matches their mean "
          "SSIM.</p>\n<h3>Every attack</h3><div class='scroll'><table><tr><th>attack</th>"
          "<th>eps</th><th>Dice</th><th>IoU</th><th>Dice vs clean prediction</th>"
          "<th>target reached</th><th>%% drop</th><th>L-inf</th><th>MSE</th><th>SSIM</th>"
          "<th>PSNR dB</th></tr>");
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(r, "rows")) {
    fprintf(o, "<tr><td>");
    report_esc(o, str(row, "attack"));
    fprintf(o, "</td>");
    eps_cell(o, num(row, "eps"), num(r, "bits"));
    cell(o, num(row, "dice"), 4);
    cell(o, num(row, "iou"), 4);
    cell(o, num(row, "dice_vs_clean"), 4);
    cell(o, num(row, "changed_reached"), 3);
    cell(o, num(row, "drop_pct"), 2);
    cell(o, num(row, "linf"), 4);
    cell(o, num(row, "mse"), 6);
    cell(o, num(row, "ssim"), 4);
    cell(o, num(row, "psnr"), 1);
    fprintf(o, "</tr>");
  }
  fprintf(o,
          "</table></div><p class='grey'>target reached: of the pixels a DAG target changes, "
          "the share showing the target class afterwards.</p>\n");
  /* Dice against eps, one line per gradient attack, from the clean Dice at 0 */
  Series s[8];
  int ns = 0;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(r, "rows")) {
    if (str(row, "dag_target")[0] || !(num(row, "eps") > 0)) continue;
    int at = -1;
    for (int i = 0; i < ns; i++)
      if (strcmp(s[i].name, str(row, "attack")) == 0) at = i;
    if (at < 0 && ns < 8) {
      at = ns++;
      memset(&s[at], 0, sizeof s[at]);
      s[at].name = str(row, "attack");
      s[at].x[0] = 0, s[at].y[0] = num(cJSON_GetObjectItem(r, "clean"), "dice"), s[at].n = 1;
    }
    if (at >= 0 && s[at].n < 64)
      s[at].x[s[at].n] = num(row, "eps"), s[at].y[s[at].n++] = num(row, "dice");
  }
  if (ns) {
    const double bits = num(r, "bits");
    const Chart chart = {"Dice against eps",
                         "eps (L-inf, [0,1] pixels)",
                         "mean Dice",
                         0,
                         data_grey_step(bits > 0 && bits <= 32 ? (int)bits : 0),
                         0,
                         NULL};
    report_svg_chart(o, &chart, s, ns);
  }
  const cJSON *noise = cJSON_GetObjectItem(r, "noise");
  if (cJSON_GetArraySize(noise)) {
    fprintf(o,
            "<h3>Noise at the attacks' SSIM (paper 002)</h3><table><tr><th>noise</th>"
            "<th>level</th><th>SSIM</th><th>Dice</th></tr>");
    cJSON_ArrayForEach(row, noise) {
      fprintf(o, "<tr><td>");
      report_esc(o, str(row, "kind"));
      fprintf(o, "</td>");
      cell(o, num(row, "level"), 4);
      cell(o, num(row, "ssim"), 4);
      cell(o, num(row, "dice"), 4);
      fprintf(o, "</tr>");
    }
    fprintf(o, "</table>\n");
  }
}

static void section_examples(FILE *o, const char *dir, const cJSON *e) {
  fprintf(o, "<h3>Examples</h3><p>Overlays:");
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(e, "classes")) {
    if (!str(c, "colour")[0]) continue;
    fprintf(o, " <span style='color:%s'>&#9632;</span> ", hstr(c, "colour"));
    report_esc(o, str(c, "name"));
  }
  fprintf(o, ". Each perturbation is amplified to half the grey range around mid-grey.</p>\n");
  const cJSON *x;
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(e, "examples")) {
    fprintf(o, "<figure class='example'><div class='trio'>");
    static const char *const keys[3] = {"image_png", "truth_png", "clean_png"};
    static const char *const heads[3] = {"image", "ground truth", "clean prediction"};
    for (int k = 0; k < 3; k++) {
      fprintf(o, "<div><div class='colhead'>%s%s", heads[k], k == 2 ? " (Dice " : "");
      if (k == 2) fprintf(o, "%.3f)", num(x, "clean_dice"));
      fprintf(o, "</div>");
      report_img(o, dir, str(x, keys[k]), heads[k], "big");
      fprintf(o, "</div>");
    }
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(x, "attacks")) {
      fprintf(o, "<div><div class='colhead'>");
      report_esc(o, str(a, "attack"));
      fprintf(o, " (Dice %.3f)</div>", num(a, "dice"));
      report_img(o, dir, str(a, "prediction_png"), str(a, "attack"), "big");
      report_img(o, dir, str(a, "difference_png"), "perturbation", "big");
      fprintf(o, "</div>");
    }
    fprintf(o, "</div><figcaption><code>");
    report_esc(o, str(x, "file"));
    fprintf(o, "</code></figcaption></figure>\n");
  }
}

static void section_compare(FILE *o, const cJSON *c) {
  const cJSON *models = cJSON_GetObjectItem(c, "models"), *row;
  const int n = cJSON_GetArraySize(models);
  fprintf(o,
          "<p id='seg-compare'><b>Segmentation models compared.</b></p><h3>Paper 002 Table 1 "
          "(segmentation, mean Dice)</h3><div class='scroll'><table><tr><th>model</th>"
          "<th>parameters</th><th>clean</th><th>Rician</th><th>adversarial average (DAG)</th>"
          "<th>%% drop</th></tr>");
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(c, "table1")) {
    fprintf(o, "<tr><td>");
    report_esc(o, str(row, "model"));
    fprintf(o, "</td><td>%.0f</td>", num(row, "params"));
    cell(o, num(row, "clean"), 3);
    cell(o, num(row, "rician"), 3);
    cell(o, num(row, "adversarial_mean"), 3);
    cell(o, num(row, "drop_pct"), 2);
    fprintf(o, "</tr>");
  }
  fprintf(o, "</table></div>\n");
  const cJSON *t2 = cJSON_GetObjectItem(c, "table2");
  if (!t2) return;
  fprintf(o,
          "<h3>Paper 002 Table 2 (segmentation): transfer</h3><p>Mean Dice of each column's "
          "model on DAG examples crafted on each row's model; the diagonal is white-box.</p>"
          "<div class='scroll'><table><tr><th></th>");
  for (int t = 0; t < DAG_TARGET_COUNT; t++)
    fprintf(o, "<th colspan='%d'>type %s</th>", n, dag_target_name((DagTarget)t));
  fprintf(o, "</tr><tr><th>crafted on</th>");
  for (int t = 0; t < DAG_TARGET_COUNT; t++)
    for (int j = 0; j < n; j++) {
      fprintf(o, "<th>");
      report_esc(o, cJSON_GetArrayItem(models, j)->valuestring);
      fprintf(o, "</th>");
    }
  fprintf(o, "</tr>");
  for (int i = 0; i < n; i++) {
    fprintf(o, "<tr><td>");
    report_esc(o, cJSON_GetArrayItem(models, i)->valuestring);
    fprintf(o, "</td>");
    for (int t = 0; t < DAG_TARGET_COUNT; t++) {
      char key[16];
      snprintf(key, sizeof key, "type_%s", dag_target_name((DagTarget)t));
      const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(t2, key), i);
      for (int j = 0; j < n; j++) {
        const cJSON *v = cJSON_GetArrayItem(m, j);
        if (i == j)
          fprintf(o, "<td class='mark'>%.3f</td>", cJSON_IsNumber(v) ? v->valuedouble : NAN);
        else
          cell(o, cJSON_IsNumber(v) ? v->valuedouble : NAN, 3);
      }
    }
    fprintf(o, "</tr>");
  }
  fprintf(o, "</table></div>\n");
}

static void section_triage(FILE *o, const cJSON *t) {
  const cJSON *items = cJSON_GetObjectItem(t, "images"), *it;
  int flagged = 0, held = 0;
  cJSON_ArrayForEach(it, items) {
    flagged += cJSON_IsTrue(cJSON_GetObjectItem(it, "flagged"));
    held += isnan(num(it, "min_eps")); /* written as null: never broke up to eps_max */
  }
  fprintf(o,
          "<h3 id='seg-triage'>Triage</h3><p>Per image, the smallest %s eps at which the Dice "
          "between the adversarial and the clean mask falls below %.2f (bisection to %.2g, up to "
          "%.3g). Re-read the %d most fragile images: without them the mean Dice against the "
          "truth is %.4f, against %.4f on all %d. %d images held up to eps %.3g.</p>"
          "<div class='scroll'><table><tr><th>rank</th><th>image</th><th>smallest eps</th>"
          "<th>clean Dice</th></tr>",
          hstr(t, "attack"), num(t, "dice_threshold"), num(t, "tol"), num(t, "eps_max"), flagged,
          num(t, "dice_aware"), num(t, "dice_all"), cJSON_GetArraySize(items), held,
          num(t, "eps_max"));
  int rank = 0;
  cJSON_ArrayForEach(it, items) {
    if (++rank > 20) break;
    fprintf(o, "<tr%s><td>%d</td><td><code>",
            cJSON_IsTrue(cJSON_GetObjectItem(it, "flagged")) ? " class='best'" : "", rank);
    report_esc(o, str(it, "image"));
    fprintf(o, "</code></td>");
    if (isnan(num(it, "min_eps")))
      fprintf(o, "<td>none</td>");
    else
      cell(o, num(it, "min_eps"), 5);
    cell(o, num(it, "clean_dice"), 4);
    fprintf(o, "</tr>");
  }
  fprintf(o,
          "</table></div><p class='grey'>The 20 most fragile; the full list is "
          "seg_triage.csv.</p>\n");
}

void report_segment_sections(FILE *o, const char *dir, const cJSON *results, const cJSON *examples,
                             const cJSON *compare, const cJSON *triage) {
  fprintf(o, "<h2 id='segmentation'>Segmentation robustness</h2>\n");
  if (results) verdict(o, results);
  if (compare) section_compare(o, compare);
  if (results) section_results(o, results);
  if (examples) section_examples(o, dir, examples);
  if (triage) section_triage(o, triage);
}
