/* report.html, rendered from the JSON a run wrote and nothing else: the
 * sweep table and accuracy-vs-eps curves (inline SVG), the noise contrast,
 * the self-checks, example images (clean / adversarial / amplified
 * difference) and the triage list with its deferral curve. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "medrobust.h"

static cJSON *read_json(const char *dir, const char *name) {
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n > 0 && n < (64L << 20) ? malloc((size_t)n + 1) : NULL;
  cJSON *j = NULL;
  if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
    buf[n] = 0;
    j = cJSON_Parse(buf);
  }
  free(buf);
  fclose(f);
  return j;
}

static void esc(FILE *o, const char *s) {
  for (; s && *s; s++) {
    if (*s == '<')
      fputs("&lt;", o);
    else if (*s == '>')
      fputs("&gt;", o);
    else if (*s == '&')
      fputs("&amp;", o);
    else if (*s == '"')
      fputs("&quot;", o);
    else
      fputc(*s, o);
  }
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* element i of a JSON array of numbers, NAN if absent */
static double item(const cJSON *array, int i) {
  const cJSON *v = cJSON_GetArrayItem(array, i);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

/* A line chart: series of (x, y) with y in [0,1] shown as percent. */
typedef struct {
  const char *name;
  double x[64], y[64];
  int n;
} Series;

static void svg_chart(FILE *o, const char *title, const char *xlabel, const Series *s, int ns) {
  const int W = 560, H = 320, L = 60, R = 150, T = 30, B = 50;
  double xmax = 0;
  for (int i = 0; i < ns; i++)
    for (int j = 0; j < s[i].n; j++) xmax = fmax(xmax, s[i].x[j]);
  if (xmax <= 0) xmax = 1;
  fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' role='img'><title>", W,
          H);
  esc(o, title);
  fprintf(o, "</title><rect width='%d' height='%d' fill='white'/>", W, H);
  const int pw = W - L - R, ph = H - T - B;
  for (int g = 0; g <= 4; g++) {
    const double yv = g / 4.0, py = T + ph * (1 - yv);
    fprintf(o, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>", L, py, L + pw, py);
    fprintf(o, "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>%.0f%%</text>", L - 6,
            py + 4, yv * 100);
    const double xv = xmax * g / 4.0, px = L + pw * g / 4.0;
    fprintf(o, "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%.3g</text>", px,
            T + ph + 16, xv);
  }
  fprintf(o, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#333'/>", L, T, pw,
          ph);
  fprintf(o, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>", L + pw / 2, H - 12);
  esc(o, xlabel);
  fprintf(o, "</text><text x='%d' y='18' font-size='13' font-weight='bold'>", L);
  esc(o, title);
  fprintf(o, "</text>");
  for (int i = 0; i < ns; i++) {
    const char *col = palette[i % 8];
    fprintf(o, "<polyline fill='none' stroke='%s' stroke-width='2' points='", col);
    for (int j = 0; j < s[i].n; j++)
      fprintf(o, "%.1f,%.1f ", L + pw * s[i].x[j] / xmax,
              T + ph * (1 - fmin(fmax(s[i].y[j], 0), 1)));
    fprintf(o, "'/>");
    for (int j = 0; j < s[i].n; j++)
      fprintf(o, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>", L + pw * s[i].x[j] / xmax,
              T + ph * (1 - fmin(fmax(s[i].y[j], 0), 1)), col);
    fprintf(o,
            "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='%s' stroke-width='2'/><text x='%d' "
            "y='%d' font-size='12'>",
            L + pw + 12, T + 10 + 18 * i, L + pw + 32, T + 10 + 18 * i, col, L + pw + 38,
            T + 14 + 18 * i);
    esc(o, s[i].name);
    fprintf(o, "</text>");
  }
  fprintf(o, "</svg>\n");
}

/* "standard", "PGD eps 0.004, 50% adversarial (counted 0.500)" ... from a training record */
static void training_text(FILE *o, const cJSON *t) {
  if (cJSON_IsString(t) || !cJSON_IsObject(t)) {
    fputs(cJSON_IsString(t) && t->valuestring[0] ? "(record unreadable)" : "unknown", o);
    return;
  }
  const cJSON *a = cJSON_GetObjectItem(t, "adversarial");
  if (!a) {
    fprintf(o, "standard, %.0f epochs", num(t, "epochs"));
    return;
  }
  fprintf(o, "adversarial: ");
  esc(o, str(a, "kind"));
  fprintf(o, " %s eps %.4g, %.0f%% requested, %.3f counted (%.0f of %.0f images)", str(a, "norm"),
          num(a, "eps"), 100 * num(a, "ratio_requested"), num(a, "ratio_effective"),
          num(a, "adversarial_images"), num(a, "images"));
  if (*str(t, "init")) {
    fprintf(o, ", fine-tuned from ");
    esc(o, str(t, "init"));
  }
}

static void section_sweep(FILE *o, const cJSON *r) {
  fprintf(o, "<h2>Accuracy under attack</h2><p>Model <code>");
  esc(o, str(r, "model"));
  fprintf(o, "</code> on <code>");
  esc(o, str(r, "data"));
  fprintf(o,
          "</code> (%s split, %.0f images). Clean accuracy <b>%.2f%%</b>. Evaluated in eval mode "
          "(batch norm frozen).</p>\n",
          str(r, "split"), num(r, "n"), 100 * num(r, "clean_accuracy"));
  if (cJSON_GetObjectItem(r, "training")) {
    fprintf(o, "<p>Training: ");
    training_text(o, cJSON_GetObjectItem(r, "training"));
    fprintf(o, ".</p>\n");
  }
  /* one curve per attack, the baseline at eps 0 */
  Series s[8];
  int ns = 0;
  const cJSON *rows = cJSON_GetObjectItem(r, "rows"), *row;
  cJSON_ArrayForEach(row, rows) {
    const char *a = str(row, "attack");
    if (strstr(a, "(check)")) continue;
    int i = 0;
    while (i < ns && strcmp(s[i].name, a) != 0) i++;
    if (i == ns) {
      if (ns == 8) continue;
      s[ns].name = a, s[ns].n = 1, s[ns].x[0] = 0, s[ns].y[0] = num(r, "clean_accuracy");
      ns++;
    }
    if (s[i].n < 64) s[i].x[s[i].n] = num(row, "eps"), s[i].y[s[i].n++] = num(row, "accuracy");
  }
  svg_chart(o, "Accuracy vs perturbation size", "eps (on the [0,1] pixel scale)", s, ns);
  fprintf(o,
          "<table><tr><th>attack</th><th>norm</th><th>eps</th><th>accuracy</th><th>%% "
          "drop</th><th>success rate</th>"
          "<th>mean L&infin;</th><th>mean L2</th><th>mean MSE</th><th>SSIM</th><th>PSNR "
          "(dB)</th><th>confidence</th></tr>\n");
  fprintf(o,
          "<tr><td>baseline</td><td></td><td>0</td><td>%.2f%%</td><td>-</td><td>-</td><td "
          "colspan='6'></td></tr>\n",
          100 * num(r, "clean_accuracy"));
  cJSON_ArrayForEach(row, rows) {
    fprintf(o, "<tr><td>");
    esc(o, str(row, "attack"));
    fprintf(o,
            "</td><td>%s</td><td>%.4g</td><td>%.2f%%</td><td>%.1f</td><td>%.1f%%</td><td>%.4g</"
            "td><td>%.4g</td><td>%.3g</td>"
            "<td>%.4f</td><td>%.2f</td><td>%.3f</td></tr>\n",
            str(row, "norm"), num(row, "eps"), 100 * num(row, "accuracy"), num(row, "drop_pct"),
            100 * num(row, "success_rate"), num(row, "mean_linf"), num(row, "mean_l2"),
            num(row, "mean_mse"), num(row, "mean_ssim"), num(row, "mean_psnr"),
            num(row, "mean_confidence"));
  }
  fprintf(o, "</table>\n");
  const cJSON *noise = cJSON_GetObjectItem(r, "noise");
  if (cJSON_GetArraySize(noise)) {
    fprintf(o,
            "<h2>Adversarial perturbation vs realistic noise at the same SSIM</h2><p>Each noise is "
            "calibrated "
            "so its mean SSIM to the clean images equals that of the adversarial images at the "
            "same eps "
            "(paper 002). Noise of that size barely moves the accuracy; the attack "
            "does.</p>\n<table><tr><th>noise"
            "</th><th>matched eps</th><th>level</th><th>SSIM</th><th>accuracy</th></tr>\n");
    const cJSON *n;
    cJSON_ArrayForEach(n, noise)
        fprintf(o, "<tr><td>%s</td><td>%.4g</td><td>%.4g</td><td>%.4f</td><td>%.2f%%</td></tr>\n",
                str(n, "noise"), num(n, "matched_eps"), num(n, "level"), num(n, "mean_ssim"),
                100 * num(n, "accuracy"));
    fprintf(o, "</table>\n");
  }
  const cJSON *checks = cJSON_GetObjectItem(r, "checks"), *c;
  if (cJSON_GetArraySize(checks)) {
    fprintf(o, "<h2>Self-checks against a failed evaluation</h2><ul class='checks'>\n");
    cJSON_ArrayForEach(c, checks) {
      const int ok = cJSON_IsTrue(cJSON_GetObjectItem(c, "passed"));
      fprintf(o, "<li class='%s'><b>%s</b> ", ok ? "ok" : "warn", ok ? "ok" : "WARNING");
      esc(o, str(c, "check"));
      fprintf(o, ": ");
      esc(o, str(c, "message"));
      fprintf(o, "</li>\n");
    }
    fprintf(o, "</ul>\n");
  }
}

static void section_examples(FILE *o, const cJSON *e) {
  fprintf(o,
          "<h2>Examples</h2><p>%s, %s eps %.4g. Difference amplified %.0f&times; around "
          "mid-grey.</p>\n<div class='grid'>",
          str(e, "attack"), str(e, "norm"), num(e, "eps"), num(e, "difference_gain"));
  const cJSON *x;
  cJSON_ArrayForEach(x, cJSON_GetObjectItem(e, "examples")) {
    fprintf(o,
            "<figure><div class='trio'><img src='%s' alt='clean'><img src='%s' "
            "alt='adversarial'><img src='%s' alt='difference'>"
            "</div><figcaption>true: ",
            str(x, "clean_png"), str(x, "adversarial_png"), str(x, "difference_png"));
    esc(o, str(x, "label"));
    fprintf(o, "<br>clean: ");
    esc(o, str(x, "clean_prediction"));
    fprintf(o, " (%.1f%%)<br>adversarial: <b>", 100 * num(x, "clean_probability"));
    esc(o, str(x, "adversarial_prediction"));
    fprintf(o, "</b> (%.1f%%)</figcaption></figure>", 100 * num(x, "adversarial_probability"));
  }
  fprintf(o, "</div>\n");
}

static void section_triage(FILE *o, const cJSON *t) {
  fprintf(o,
          "<h2>Triage by adversarial sensitivity</h2><p>For every image, the smallest %s eps that "
          "changes the "
          "prediction (bisection to %.2g below %.3g). Flagging the most fragile %.0f%% (%.0f "
          "images) for human "
          "review: accuracy <b>%.2f%%</b> on all images, <b>%.2f%%</b> on the rest (paper 001, "
          "Table 2). Deferral "
          "curve AUC %.4f.</p>\n",
          str(t, "attack"), num(t, "tolerance"), num(t, "eps_max"), 100 * num(t, "flag_fraction"),
          num(t, "n_flagged"), 100 * num(t, "accuracy_all"), 100 * num(t, "accuracy_aware"),
          num(t, "deferral_auc"));
  Series s = {.name = "accuracy"};
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(t, "deferral_curve")) if (s.n < 64)
      s.x[s.n] = num(p, "deferred"),
      s.y[s.n++] = num(p, "accuracy");
  svg_chart(o, "Accuracy on the images kept vs fraction deferred",
            "fraction of most fragile images deferred", &s, 1);
  fprintf(o,
          "<table><tr><th>rank</th><th>image</th><th>index</th><th>label</th><th>prediction</"
          "th><th>confidence</th>"
          "<th>minimal eps</th><th>flagged</th></tr>\n");
  int rank = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(t, "images")) {
    if (++rank > 30) break;
    const char *png = str(it, "png");
    fprintf(o, "<tr><td>%d</td><td>", rank);
    if (*png) fprintf(o, "<img class='thumb' src='%s' alt='image %.0f'>", png, num(it, "index"));
    const double e = num(it, "min_eps");
    fprintf(o,
            "</td><td>%.0f</td><td>%.0f</td><td>%.0f</td><td>%.3f</td><td>%s%.3g</td><td>%s</td></"
            "tr>\n",
            num(it, "index"), num(it, "label"), num(it, "prediction"), num(it, "confidence"),
            isnan(e) ? "&gt; " : "", isnan(e) ? num(t, "eps_max") : e,
            cJSON_IsTrue(cJSON_GetObjectItem(it, "flagged")) ? "review" : "");
  }
  fprintf(o, "</table>\n");
}

static void section_saliency(FILE *o, const cJSON *sal) {
  fprintf(
      o,
      "<h2>Where the model looks</h2><p>Saliency of the predicted class: the gradient of its "
      "score with respect to each pixel (vanilla) and its average over %.0f noisy copies "
      "(SmoothGrad, noise std %.2g), before and after %s eps %.4g (paper 004, Figs 3-4). Bright "
      "= pixels that move the decision most. A robust model's maps stay on the lesion and "
      "change little under attack.</p>\n<table class='sal'><tr><th>true</th><th>clean</th>"
      "<th>gradient</th><th>SmoothGrad</th><th>attacked</th><th>gradient</th>"
      "<th>SmoothGrad</th></tr>\n",
      num(sal, "smoothgrad_samples"), num(sal, "smoothgrad_sigma"), str(sal, "attack"),
      num(sal, "eps"));
  const cJSON *e;
  static const char *const keys[6] = {
      "clean_png",       "clean_gradient_png",       "clean_smoothgrad_png",
      "adversarial_png", "adversarial_gradient_png", "adversarial_smoothgrad_png"};
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(sal, "images")) {
    fprintf(o, "<tr><td>");
    esc(o, str(e, "label"));
    fprintf(o, "</td>");
    for (int p = 0; p < 6; p++) {
      fprintf(o, "<td><img src='%s' alt='%s'>", str(e, keys[p]), keys[p]);
      if (p == 0 || p == 3) {
        fprintf(o, "<br>");
        esc(o, str(e, p ? "adversarial_prediction" : "clean_prediction"));
      }
      fprintf(o, "</td>");
    }
    fprintf(o, "</tr>\n");
  }
  fprintf(o, "</table>\n");
}

/* a point's predicted class, or -1 if the JSON lacks a sane one */
static int class_of(const cJSON *point) {
  const double v = num(point, "prediction");
  return v >= 0 && v < MR_MAX_CLASSES ? (int)v : -1;
}

static void section_embedding(FILE *o, const cJSON *emb) {
  const cJSON *pts = cJSON_GetObjectItem(emb, "points"), *p;
  const cJSON *ev = cJSON_GetObjectItem(emb, "explained_variance");
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  cJSON_ArrayForEach(p, pts) {
    xmin = fmin(xmin, num(p, "x")), xmax = fmax(xmax, num(p, "x"));
    ymin = fmin(ymin, num(p, "y")), ymax = fmax(ymax, num(p, "y"));
  }
  if (!(xmax > xmin)) xmax = xmin + 1;
  if (!(ymax > ymin)) ymax = ymin + 1;
  const int n = cJSON_GetArraySize(pts) / 2;
  fprintf(o,
          "<h2>Feature space: clean vs attacked</h2><p>Penultimate-layer features of %d images "
          "in the 2-D PCA of the clean ones (%.0f%% and %.0f%% of their variance); each clean "
          "point (circle) is joined to its %s eps %.4g version (cross); colour = the class the "
          "model predicts (paper 002 Fig. 3, paper 004 Fig. 5). Attacked points that change "
          "colour crossed the decision boundary.</p>\n",
          n, 100 * item(ev, 0), 100 * item(ev, 1), str(emb, "attack"), num(emb, "eps"));
  const int W = 560, H = 420, M = 20, legend = 150;
  fprintf(o,
          "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' role='img'>"
          "<title>feature embedding</title><rect width='%d' height='%d' fill='white' "
          "stroke='#333'/>",
          W + legend, H, W, H);
  const cJSON *first = cJSON_GetArrayItem(pts, 0);
  for (int i = 0; i < n && first; i++) {
    const cJSON *a = cJSON_GetArrayItem(pts, i), *b = cJSON_GetArrayItem(pts, n + i);
    const int pa = class_of(a), pb = class_of(b);
    const double ax = M + (W - 2 * M) * (num(a, "x") - xmin) / (xmax - xmin);
    const double ay = H - M - (H - 2 * M) * (num(a, "y") - ymin) / (ymax - ymin);
    const double bx = M + (W - 2 * M) * (num(b, "x") - xmin) / (xmax - xmin);
    const double by = H - M - (H - 2 * M) * (num(b, "y") - ymin) / (ymax - ymin);
    /* a missing or odd prediction draws grey, never indexes out of the palette */
    const char *ca = pa >= 0 ? palette[pa % 8] : "#999", *cb = pb >= 0 ? palette[pb % 8] : "#999";
    fprintf(o, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#bbb' stroke-width='0.6'/>",
            ax, ay, bx, by);
    fprintf(o, "<circle cx='%.1f' cy='%.1f' r='2.6' fill='none' stroke='%s'/>", ax, ay, ca);
    fprintf(o, "<path d='M%.1f %.1fl5 5m0 -5l-5 5' stroke='%s' stroke-width='1.3'/>", bx - 2.5,
            by - 2.5, cb);
  }
  int c = 0;
  const cJSON *name;
  cJSON_ArrayForEach(name, cJSON_GetObjectItem(emb, "classes")) {
    fprintf(o, "<circle cx='%d' cy='%d' r='5' fill='%s'/><text x='%d' y='%d' font-size='12'>",
            W + 16, 20 + 18 * c, palette[c % 8], W + 26, 24 + 18 * c);
    esc(o, cJSON_IsString(name) ? name->valuestring : "");
    fprintf(o, "</text>");
    c++;
  }
  fprintf(o, "<text x='%d' y='%d' font-size='12'>o clean, x attacked</text></svg>\n", W + 10,
          30 + 18 * c);
}

static void section_compare(FILE *o, const cJSON *c) {
  const cJSON *models = cJSON_GetObjectItem(c, "models"), *m;
  fprintf(o, "<h2>Model comparison</h2><p>%d models on <code>", cJSON_GetArraySize(models));
  esc(o, str(c, "data"));
  fprintf(o,
          "</code> (%s split, %.0f images), the same images for all. Robust accuracy with %% drop "
          "in brackets; median eps: half the images flip below it (triage, bound %.3g).</p>\n",
          str(c, "split"), num(c, "n"), num(c, "triage_eps_max"));
  fprintf(o,
          "<table><tr><th>model</th><th>arch</th><th>parameters</th><th>MFLOPs</th>"
          "<th>training</th><th>clean</th>");
  const cJSON *first = cJSON_GetArrayItem(models, 0), *row;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(first, "rows")) {
    fprintf(o, "<th>");
    esc(o, str(row, "attack"));
    fprintf(o, " %.4g</th>", num(row, "eps"));
  }
  fprintf(o, "<th>median eps</th><th>without 20%% most fragile</th></tr>\n");
  cJSON_ArrayForEach(m, models) {
    fprintf(o, "<tr><td>");
    esc(o, str(m, "name"));
    fprintf(o, "</td><td>");
    esc(o, str(m, "arch"));
    fprintf(o, "</td><td>%.0f</td><td>%.1f</td><td style='text-align:left'>", num(m, "params"),
            num(m, "mflops"));
    training_text(o, cJSON_GetObjectItem(m, "training"));
    fprintf(o, "</td><td>%.2f%%</td>", 100 * num(m, "clean_accuracy"));
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(m, "rows"))
        fprintf(o, "<td>%.2f%% (%.0f)</td>", 100 * num(row, "accuracy"), num(row, "drop_pct"));
    const cJSON *med = cJSON_GetObjectItem(m, "min_eps_median");
    if (!med)
      fprintf(o, "<td>-</td><td>-</td></tr>\n");
    else
      fprintf(o, "<td>%s%.4g</td><td>%.2f%%</td></tr>\n", cJSON_IsNull(med) ? "&gt; " : "",
              cJSON_IsNull(med) ? num(c, "triage_eps_max") : med->valuedouble,
              100 * num(m, "accuracy_aware"));
  }
  fprintf(o, "</table>\n");
  /* one chart per attack, a curve per model */
  const char *attacks[8];
  int na = 0;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(first, "rows")) {
    int seen = 0;
    for (int i = 0; i < na; i++) seen |= strcmp(attacks[i], str(row, "attack")) == 0;
    if (!seen && na < 8) attacks[na++] = str(row, "attack");
  }
  for (int a = 0; a < na; a++) {
    Series s[8];
    int ns = 0;
    cJSON_ArrayForEach(m, models) {
      if (ns == 8) break;
      Series *cur = &s[ns++];
      cur->name = str(m, "name"), cur->n = 1, cur->x[0] = 0, cur->y[0] = num(m, "clean_accuracy");
      cJSON_ArrayForEach(
          row, cJSON_GetObjectItem(m, "rows")) if (strcmp(str(row, "attack"), attacks[a]) == 0 &&
                                                   cur->n < 64) cur->x[cur->n] = num(row, "eps"),
                                                                cur->y[cur->n++] =
                                                                    num(row, "accuracy");
    }
    char title[64];
    snprintf(title, sizeof title, "Accuracy under %s", attacks[a]);
    svg_chart(o, title, "eps (on the [0,1] pixel scale)", s, ns);
  }
  const cJSON *t = cJSON_GetObjectItem(c, "transfer");
  if (!t) return;
  fprintf(o,
          "<h3>Transfer (black-box) matrix</h3><p>%s, %s eps %.4g, crafted on the row's model and "
          "shown to the column's: accuracy of the column's model (paper 002, Table 2). The "
          "diagonal is the white-box attack.</p><table><tr><th>source \\ target</th>",
          str(t, "attack"), str(t, "norm"), num(t, "eps"));
  cJSON_ArrayForEach(m, models) {
    fprintf(o, "<th>");
    esc(o, str(m, "name"));
    fprintf(o, "</th>");
  }
  fprintf(o, "</tr>\n");
  int i = 0;
  const cJSON *acc_row;
  cJSON_ArrayForEach(acc_row, cJSON_GetObjectItem(t, "accuracy")) {
    fprintf(o, "<tr><td>");
    esc(o, str(cJSON_GetArrayItem(models, i), "name"));
    fprintf(o, "</td>");
    int j = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, acc_row) {
      const double a = cJSON_IsNumber(v) ? v->valuedouble : NAN;
      /* red where the attack works, white where it does not */
      const int shade = (int)(155 + 100 * fmin(fmax(a, 0), 1));
      fprintf(o, "<td style='background:rgb(255,%d,%d)%s'>%.2f%%</td>", shade, shade,
              i == j ? ";font-weight:bold" : "", 100 * a);
      j++;
    }
    fprintf(o, "</tr>\n");
    i++;
  }
  fprintf(o, "</table>\n");
}

Status report_render(const char *dir, MrError *err) {
  cJSON *results = read_json(dir, "results.json"), *examples = read_json(dir, "examples.json");
  cJSON *triage = read_json(dir, "triage.json"), *compare = read_json(dir, "compare.json");
  cJSON *saliency = read_json(dir, "saliency.json"), *embedding = read_json(dir, "embedding.json");
  if (!results && !triage && !compare && !saliency && !embedding) {
    cJSON_Delete(examples);
    return mr_error_set(err, STATUS_ERR_IO,
                        "%s: no results.json, triage.json, compare.json or saliency.json (run "
                        "eval, triage, compare or saliency first)",
                        dir);
  }
  char path[4300], tmp[4400];
  snprintf(path, sizeof path, "%s/report.html", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *o = fopen(tmp, "w");
  if (!o) {
    cJSON_Delete(results), cJSON_Delete(examples), cJSON_Delete(triage), cJSON_Delete(compare);
    cJSON_Delete(saliency), cJSON_Delete(embedding);
    return mr_error_set(err, STATUS_ERR_IO, "%s: cannot write", tmp);
  }
  fprintf(o,
          "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>medrobust "
          "report</title><style>"
          "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid "
          "#ccc;padding:3px 7px;"
          "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
          ".checks li.warn{color:#b00}.checks "
          "li.ok{color:#060}.grid{display:flex;flex-wrap:wrap;gap:14px}"
          "figure{margin:0;font-size:12px}.trio "
          "img{width:96px;image-rendering:pixelated;margin-right:2px;"
          "border:1px solid #999}img.thumb{width:56px;image-rendering:pixelated}"
          ".sal img{width:84px;image-rendering:pixelated}.sal td{text-align:center}"
          "</style></head><body><h1>medrobust robustness report</h1>\n");
  if (compare) section_compare(o, compare);
  if (results) section_sweep(o, results);
  if (examples) section_examples(o, examples);
  if (triage) section_triage(o, triage);
  if (saliency) section_saliency(o, saliency);
  if (embedding) section_embedding(o, embedding);
  fprintf(o,
          "<p style='color:#777;font-size:12px'>Rendered from the JSON files in this folder; every "
          "number above "
          "is read from them, none recomputed.</p></body></html>\n");
  const int ok = !ferror(o);
  cJSON_Delete(results), cJSON_Delete(examples), cJSON_Delete(triage), cJSON_Delete(compare);
  cJSON_Delete(saliency), cJSON_Delete(embedding);
  if (fclose(o) != 0 || !ok || rename(tmp, path) != 0) {
    remove(tmp);
    return mr_error_set(err, STATUS_ERR_IO, "%s: write failed", path);
  }
  return STATUS_OK;
}
