/* report.html, rendered from the JSON a run wrote and nothing else. It opens
 * with a verdict (how fragile the model is, which model to deploy, which
 * files to re-read), then the evidence: the comparison, the sweep with its
 * balanced metrics and grey-level eps, the noise contrast, the self-checks,
 * examples the attack flipped and some it did not, triage against the
 * confidence baselines, saliency over the images and the feature embedding.
 * Images are embedded (data: URIs) so the one file can be mailed; only
 * relative paths inside the report folder are read. The layout reads on a
 * phone (420 px) and a desktop. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "report.h"

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
    else if (*s == '\'')
      fputs("&#39;", o);
    else
      fputc(*s, o);
  }
}

const char *report_html(const char *s) {
  static char buf[8][1024];
  static unsigned next;
  char *out = buf[next++ % 8];
  size_t n = 0;
  for (; s && *s && n + 8 < sizeof buf[0]; s++) {
    const char *rep = *s == '<'    ? "&lt;"
                      : *s == '>'  ? "&gt;"
                      : *s == '&'  ? "&amp;"
                      : *s == '"'  ? "&quot;"
                      : *s == '\'' ? "&#39;"
                                   : NULL;
    if (rep)
      n += (size_t)snprintf(out + n, sizeof buf[0] - n, "%s", rep);
    else
      out[n++] = *s;
  }
  out[n] = 0;
  return out;
}

const char *report_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}
static const char *str(const cJSON *o, const char *k) { return report_str(o, k); }
/* a JSON string escaped for printing into the page: the JSON is untrusted */
static const char *hstr(const cJSON *o, const char *k) { return report_html(report_str(o, k)); }

double report_num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static double num(const cJSON *o, const char *k) { return report_num(o, k); }

/* element i of a JSON array of numbers, NAN if absent */
static double item(const cJSON *array, int i) {
  const cJSON *v = cJSON_GetArrayItem(array, i);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int flag(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItem(o, k)); }

/* ---- embedded images ------------------------------------------------------ */

/* RFC 4648 base64. Written here (a dozen lines) rather than pulling OpenSSL
 * or GLib in for one function. */
static void base64(FILE *o, const unsigned char *p, size_t n) {
  static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    const unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                       (i + 2 < n ? p[i + 2] : 0);
    fputc(table[v >> 18 & 63], o), fputc(table[v >> 12 & 63], o);
    fputc(i + 1 < n ? table[v >> 6 & 63] : '=', o), fputc(i + 2 < n ? table[v & 63] : '=', o);
  }
}

/* A path the report may read: relative, inside the folder, a .png. */
static int safe_image_path(const char *rel) {
  const size_t n = strlen(rel);
  return n > 4 && n < 200 && rel[0] != '/' && !strstr(rel, "..") && !strchr(rel, ':') &&
         strcmp(rel + n - 4, ".png") == 0;
}

/* <img> with the PNG embedded; nothing when the path is unsafe or missing. */
static void img(FILE *o, const char *dir, const char *rel, const char *alt, const char *cls) {
  if (!safe_image_path(rel)) return;
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  FILE *f = fopen(path, "rb");
  if (!f) return;
  unsigned char *buf = malloc(4u << 20);
  const size_t n = buf ? fread(buf, 1, 4u << 20, f) : 0;
  fclose(f);
  if (n > 0 && n < (4u << 20)) {
    fprintf(o, "<img class='%s' alt='", cls);
    esc(o, alt);
    fprintf(o, "' src='data:image/png;base64,");
    base64(o, buf, n);
    fprintf(o, "'>");
  }
  free(buf);
}

void report_esc(FILE *o, const char *s) { esc(o, s); }
void report_img(FILE *o, const char *dir, const char *rel, const char *alt, const char *cls) {
  img(o, dir, rel, alt, cls);
}
cJSON *report_read_json(const char *dir, const char *name) { return read_json(dir, name); }

/* ---- eps with grey levels ---------------------------------------------- */

/* A JSON bit depth as an int, 0 when absent or absurd. */
static int bits_of(double bits) { return bits > 0 && bits <= 32 ? (int)bits : 0; }

/* The width of the intensity window the data came through (modality units per unit of
 * [0,1] pixels), from the report's JSON; 0 without one. */
static double window_width;

static void read_window(const cJSON *root) {
  const cJSON *w = root ? cJSON_GetObjectItem(root, "window") : NULL;
  if (cJSON_GetArraySize(w) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(w, 1)))
    window_width = cJSON_GetArrayItem(w, 1)->valuedouble;
}

/* "0.004 (1.02/255)", and a mark when below one grey level; "0.004 (6 HU)" through a window */
static void eps_text(FILE *o, double eps, double bits, const char *norm) {
  const double step = data_grey_step(bits_of(bits));
  fprintf(o, "%.4g", eps);
  if (window_width > 0) fprintf(o, " <span class='grey'>(%.3g HU)</span>", eps * window_width);
  if (step > 0 && eps > 0 && strcmp(norm, "l2") != 0) {
    fprintf(o, " <span class='grey'>(%.3g/%.0f)</span>", eps / step, 1.0 / step);
    if (eps < step) fprintf(o, "<sup title='below one grey level of the stored data'>*</sup>");
  }
}

/* ---- charts --------------------------------------------------------------- */

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

void report_svg_chart(FILE *o, const Chart *c, const Series *s, int ns) {
  const int W = 600, H = 340, L = 58, R = 150, T = 30, B = 62;
  double xmax = 0;
  for (int i = 0; i < ns; i++)
    for (int j = 0; j < s[i].n; j++) xmax = fmax(xmax, s[i].x[j]);
  if (xmax <= 0) xmax = 1;
  fprintf(o,
          "<svg class='chart' viewBox='0 0 %d %d' xmlns='http://www.w3.org/2000/svg' role='img'>"
          "<title>",
          W, H);
  esc(o, c->title);
  fprintf(o, "</title><rect width='%d' height='%d' fill='white'/>", W, H);
  const int pw = W - L - R, ph = H - T - B;
  for (int g = 0; g <= 4; g++) {
    const double yv = g / 4.0, py = T + ph * (1 - yv);
    fprintf(o, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>", L, py, L + pw, py);
    fprintf(o, "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>%.0f%%</text>", L - 6,
            py + 4, yv * 100);
    const double xv = xmax * g / 4.0, px = L + pw * g / 4.0;
    fprintf(o, "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%.3g%s</text>", px,
            T + ph + 15, c->x_percent ? 100 * xv : xv, c->x_percent ? "%" : "");
    if (c->x_step > 0)
      fprintf(o,
              "<text x='%.1f' y='%d' font-size='10' fill='#666' text-anchor='middle'>%.3g/%.0f"
              "</text>",
              px, T + ph + 28, xv / c->x_step, 1.0 / c->x_step);
  }
  fprintf(o, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#333'/>", L, T, pw,
          ph);
  if (c->marker_x > 0 && c->marker_x <= xmax) {
    const double mx = L + pw * c->marker_x / xmax;
    fprintf(o,
            "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#555' stroke-dasharray='4 3'/>"
            "<text x='%.1f' y='%d' font-size='11'>",
            mx, T, mx, T + ph, mx + 4, T + 12);
    esc(o, c->marker_label);
    fprintf(o, "</text>");
  }
  fprintf(o, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>", L + pw / 2, H - 8);
  esc(o, c->xlabel);
  fprintf(o,
          "</text><text transform='translate(14 %d) rotate(-90)' font-size='12' "
          "text-anchor='middle'>",
          T + ph / 2);
  esc(o, c->ylabel);
  fprintf(o, "</text><text x='%d' y='18' font-size='13' font-weight='bold'>", L);
  esc(o, c->title);
  fprintf(o, "</text>");
  int legend = 0;
  for (int i = 0; i < ns; i++) {
    const char *col = palette[(s[i].dashed ? s[i].dashed - 1 : i) % 8];
    fprintf(o, "<polyline fill='none' stroke='%s' stroke-width='2'%s points='", col,
            s[i].dashed ? " stroke-dasharray='5 3'" : "");
    for (int j = 0; j < s[i].n; j++)
      fprintf(o, "%.1f,%.1f ", L + pw * s[i].x[j] / xmax,
              T + ph * (1 - fmin(fmax(s[i].y[j], 0), 1)));
    fprintf(o, "'/>");
    for (int j = 0; j < s[i].n; j++)
      fprintf(o, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>", L + pw * s[i].x[j] / xmax,
              T + ph * (1 - fmin(fmax(s[i].y[j], 0), 1)), col);
    if (s[i].dashed) continue;
    fprintf(o,
            "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='%s' stroke-width='2'/><text x='%d' "
            "y='%d' font-size='12'>",
            L + pw + 10, T + 10 + 18 * legend, L + pw + 28, T + 10 + 18 * legend, col, L + pw + 32,
            T + 14 + 18 * legend);
    esc(o, s[i].name);
    fprintf(o, "</text>");
    legend++;
  }
  fprintf(o, "</svg>\n");
}

/* ---- text helpers ----------------------------------------------------------- */

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
  fprintf(o, " ");
  esc(o, str(a, "norm"));
  fprintf(o, " eps %.4g, %.0f%% requested, %.3f counted (%.0f of %.0f images)", num(a, "eps"),
          100 * num(a, "ratio_requested"), num(a, "ratio_effective"), num(a, "adversarial_images"),
          num(a, "images"));
  if (*str(t, "init")) {
    fprintf(o, ", fine-tuned from ");
    esc(o, str(t, "init"));
  }
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* "<b>model</b> on <b>data</b>": file names without their folders */
static void model_on_data(FILE *o, const cJSON *r, const char *tag) {
  fprintf(o, "<%s>", tag);
  esc(o, base_name(str(r, "model")));
  fprintf(o, "</%s> on <%s>", tag, tag);
  esc(o, base_name(str(r, "data")));
  fprintf(o, "</%s>", tag);
}

/* The rows of the worst attack at each eps (eps ascending), checks excluded. */
static int worst_rows(const cJSON *r, const cJSON **out, int max) {
  int n = 0;
  const cJSON *row;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(r, "rows")) {
    if (strstr(str(row, "attack"), "(check)")) continue;
    int at = -1;
    for (int i = 0; i < n; i++)
      if (num(out[i], "eps") == num(row, "eps")) at = i;
    if (at < 0 && n < max) out[at = n++] = row;
    if (at >= 0 && num(row, "balanced_accuracy") < num(out[at], "balanced_accuracy")) out[at] = row;
  }
  for (int i = 1; i < n; i++) /* insertion sort by eps */
    for (int j = i; j > 0 && num(out[j], "eps") < num(out[j - 1], "eps"); j--) {
      const cJSON *t = out[j];
      out[j] = out[j - 1], out[j - 1] = t;
    }
  return n;
}

/* ---- the verdict ------------------------------------------------------------ */

static void headline(FILE *o, const cJSON *r, const cJSON *t, const cJSON *c) {
  fprintf(o, "<section id='verdict' class='headline'><h2>Verdict</h2>\n");
  if (c) {
    fprintf(o, "<p class='deploy'>");
    esc(o, str(c, "verdict"));
    fprintf(o, "</p>\n");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "models")) {
      if (strcmp(str(m, "name"), str(c, "deploy")) != 0) continue;
      const cJSON *half = cJSON_GetObjectItem(m, "balanced_halving_eps");
      fprintf(o, "<p class='fragility'>");
      esc(o, str(m, "name"));
      if (cJSON_IsNumber(half)) {
        fprintf(o, "'s balanced accuracy halves at eps ");
        eps_text(o, half->valuedouble, num(c, "bits"), "linf");
      } else {
        fprintf(o, "'s balanced accuracy does not halve over the eps tried");
      }
      fprintf(o, ".");
      if (*str(m, "triage_csv")) {
        fprintf(o, " <b>Re-read %.0f images</b> with it (the 20%% most fragile, <a href='",
                num(m, "n_flagged"));
        esc(o, str(m, "triage_csv"));
        fprintf(o, "'>");
        esc(o, str(m, "triage_csv"));
        fprintf(o,
                "</a>): %.0f of them it already gets wrong; on the rest accuracy is %.1f%%, "
                "balanced %.1f%%.",
                num(m, "n_flagged_wrong"), 100 * num(m, "accuracy_aware"),
                100 * num(m, "balanced_aware"));
      }
      fprintf(o, "</p>\n");
    }
  }
  if (r) {
    const double bits = num(r, "bits");
    fprintf(o, "<p>");
    model_on_data(o, r, "b");
    fprintf(o,
            " (%s split, %.0f images): clean balanced accuracy <b>%.1f%%</b> (accuracy "
            "%.1f%%; answering '",
            hstr(r, "split"), num(r, "n"), 100 * num(r, "clean_balanced_accuracy"),
            100 * num(r, "clean_accuracy"));
    esc(o, str(r, "majority_class"));
    fprintf(o, "' to every image would score %.1f%%).</p>\n", 100 * num(r, "majority_share"));
    const cJSON *worst[64];
    const int nw = worst_rows(r, worst, 64);
    const cJSON *half = cJSON_GetObjectItem(r, "balanced_halving_eps");
    fprintf(o, "<p class='fragility'>");
    if (cJSON_IsNumber(half)) {
      fprintf(o, "<b>Fragile:</b> balanced accuracy halves at eps ");
      eps_text(o, half->valuedouble, bits, "linf");
      fprintf(o, " on the [0,1] pixel scale");
    } else if (nw) {
      fprintf(o, "Balanced accuracy does not halve up to eps ");
      eps_text(o, num(worst[nw - 1], "eps"), bits, str(worst[nw - 1], "norm"));
      fprintf(o, " (%.1f%% left under %s)", 100 * num(worst[nw - 1], "balanced_accuracy"),
              hstr(worst[nw - 1], "attack"));
    }
    fprintf(o, ".");
    if (nw && *str(r, "positive_class")) {
      const cJSON *w = worst[nw - 1];
      fprintf(o, " Of %.0f '", num(r, "positives"));
      esc(o, str(r, "positive_class"));
      fprintf(o, "' images the model finds %.0f clean and %.0f under %s at eps ",
              num(r, "clean_detected"), num(w, "positives_detected"), hstr(w, "attack"));
      eps_text(o, num(w, "eps"), bits, str(w, "norm"));
      fprintf(o, ": <b>%.0f missed diagnoses</b>.", num(w, "missed"));
    }
    fprintf(o, "</p>\n");
    int warnings = 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItem(r, "checks")) warnings += !flag(ch, "passed");
    if (warnings) {
      fprintf(o, "<p class='warn'><b>%d self-check%s fired</b>: ", warnings,
              warnings > 1 ? "s" : "");
      int first = 1;
      cJSON_ArrayForEach(ch, cJSON_GetObjectItem(r, "checks")) if (!flag(ch, "passed")) {
        fprintf(o, "%s", first ? "" : "; ");
        esc(o, str(ch, "message"));
        first = 0;
      }
      fprintf(o, ".</p>\n");
    } else if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "checks"))) {
      fprintf(o, "<p>Every self-check against a failed evaluation passed.</p>\n");
    }
  }
  if (t) {
    fprintf(o,
            "<p class='reread'><b>Re-read %.0f image%s</b> (the %.0f%% most fragile, "
            "<a href='triage.csv'>triage.csv</a>)",
            num(t, "n_flagged"), num(t, "n_flagged") == 1 ? "" : "s",
            100 * num(t, "flag_fraction"));
    if (flag(t, "labelled")) {
      fprintf(o,
              ": %.0f of them the model already gets wrong; on the rest accuracy is %.1f%% "
              "(from %.1f%%), balanced %.1f%% (from %.1f%%).",
              num(t, "n_flagged_wrong"), 100 * num(t, "accuracy_aware"),
              100 * num(t, "accuracy_all"), 100 * num(t, "balanced_aware"),
              100 * num(t, "balanced_all"));
      /* does it beat the baselines a user would try first? */
      const cJSON *def = cJSON_GetObjectItem(t, "deferral");
      double best = -1;
      const char *best_name = "";
      const cJSON *sc;
      cJSON_ArrayForEach(sc, def) {
        if (strcmp(sc->string, "adversarial") == 0) continue;
        const double v = num(cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "points"), 4), "accuracy");
        if (v > best) best = v, best_name = sc->string;
      }
      const cJSON *ours = cJSON_GetObjectItem(cJSON_GetObjectItem(def, "adversarial"), "points");
      const double mine = num(cJSON_GetArrayItem(ours, 4), "accuracy"); /* the 20% point */
      if (best >= 0)
        fprintf(o,
                " Deferring the same 20%% by %s instead leaves %.1f%% (adversarial: %.1f%%): "
                "adversarial triage is %s.",
                best_name, 100 * best, 100 * mine,
                mine > best + 1e-9   ? "worth its cost here"
                : mine < best - 1e-9 ? "<b>not</b> better than the cheap baseline here"
                                     : "no better than the cheap baseline here");
    }
    fprintf(o, "</p>\n");
  }
  fprintf(o, "</section>\n");
}

/* ---- sections --------------------------------------------------------------- */

/* Per class, clean and under the worst attack at the largest eps:
 * sensitivity (recall) and specificity. */
static void per_class_table(FILE *o, const cJSON *r) {
  const cJSON *worst[64];
  const int nw = worst_rows(r, worst, 64);
  if (!nw) return;
  const cJSON *w = worst[nw - 1], *names = cJSON_GetObjectItem(r, "class_names");
  fprintf(o, "<p>Per class, clean and under %s at eps ", hstr(w, "attack"));
  eps_text(o, num(w, "eps"), num(r, "bits"), str(w, "norm"));
  fprintf(o,
          " (the strongest attack there):</p><div class='scroll'><table><tr><th>class</th>"
          "<th>sensitivity clean</th><th>attacked</th><th>specificity clean</th><th>attacked"
          "</th></tr>\n");
  const cJSON *sc = cJSON_GetObjectItem(r, "sensitivity"),
              *pc = cJSON_GetObjectItem(r, "specificity");
  const cJSON *sa = cJSON_GetObjectItem(w, "sensitivity"),
              *pa = cJSON_GetObjectItem(w, "specificity");
  for (int c = 0; c < cJSON_GetArraySize(names) && c < 64; c++) {
    const cJSON *name = cJSON_GetArrayItem(names, c);
    fprintf(o, "<tr><td>");
    esc(o, cJSON_IsString(name) ? name->valuestring : "?");
    fprintf(o, "</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td></tr>\n",
            100 * item(sc, c), 100 * item(sa, c), 100 * item(pc, c), 100 * item(pa, c));
  }
  fprintf(o, "</table></div>\n");
}

static void section_sweep(FILE *o, const cJSON *r) {
  const double bits = num(r, "bits"), step = data_grey_step(bits_of(bits));
  const int binary = *str(r, "positive_class") != 0;
  fprintf(o, "<h2 id='sweep'>Accuracy under attack</h2><p>Model ");
  model_on_data(o, r, "code");
  fprintf(o,
          " (%s split, %.0f images), evaluated in eval mode (batch norm frozen). Clean: "
          "accuracy <b>%.2f%%</b>, balanced accuracy <b>%.2f%%</b>, ROC AUC %.3f. Attacks: FGSM "
          "(Goodfellow et al. 2015), BIM and PGD (Madry et al. 2018) as in paper 001 [1].",
          hstr(r, "split"), num(r, "n"), 100 * num(r, "clean_accuracy"),
          100 * num(r, "clean_balanced_accuracy"), num(r, "clean_auc"));
  if (flag(r, "eps_carried"))
    fprintf(o,
            " Each attack's eps run smallest first: an image fooled at one eps counts as fooled "
            "at every larger one (its adversarial example lies in the larger ball) and is not "
            "attacked again, so accuracy cannot rise with eps.");
  if (step > 0)
    fprintf(o,
            " The data is stored at %.0f bits: one grey level is %.3g; eps marked * is below "
            "one level and does not survive saving the image.",
            bits, step);
  fprintf(o, "</p>\n");
  if (cJSON_GetObjectItem(r, "training")) {
    fprintf(o, "<p>Training: ");
    training_text(o, cJSON_GetObjectItem(r, "training"));
    fprintf(o, ".</p>\n");
  }
  /* balanced accuracy per attack, accuracy dashed */
  Series s[8];
  int ns = 0;
  const cJSON *rows = cJSON_GetObjectItem(r, "rows"), *row;
  for (int pass = 0; pass < 2; pass++) {
    const int first = ns;
    cJSON_ArrayForEach(row, rows) {
      const char *a = str(row, "attack");
      if (strstr(a, "(check)")) continue;
      int i = first;
      while (i < ns && strcmp(s[i].name, a) != 0) i++;
      if (i == ns) {
        if (ns == 8) continue;
        s[ns] = (Series){.name = a, .n = 1, .dashed = pass ? ns - first + 1 : 0};
        s[ns].y[0] = num(r, pass ? "clean_accuracy" : "clean_balanced_accuracy");
        ns++;
      }
      if (s[i].n < 64)
        s[i].x[s[i].n] = num(row, "eps"),
        s[i].y[s[i].n++] = num(row, pass ? "accuracy" : "balanced_accuracy");
    }
    if (pass == 0 && ns > 4) break; /* many attacks: balanced only */
  }
  const Chart chart = {"Balanced accuracy (solid) and accuracy (dashed) vs eps",
                       "eps on the [0,1] pixel scale (grey levels below)",
                       "share of images",
                       0,
                       step,
                       0,
                       ""};
  report_svg_chart(o, &chart, s, ns);
  fprintf(o,
          "<div class='scroll'><table><tr><th>attack</th><th>eps</th><th>accuracy</th>"
          "<th>balanced</th><th>AUC</th>");
  if (binary) {
    fprintf(o, "<th>'");
    esc(o, str(r, "positive_class"));
    fprintf(o, "' found</th><th>missed</th>");
  }
  fprintf(o,
          "<th>%% drop</th><th>success</th><th>mean L&infin;</th><th>SSIM</th><th>PSNR</th>"
          "<th>confidence</th></tr>\n<tr><td>clean</td><td>0</td><td>%.2f%%</td><td>%.2f%%"
          "</td><td>%.3f</td>",
          100 * num(r, "clean_accuracy"), 100 * num(r, "clean_balanced_accuracy"),
          num(r, "clean_auc"));
  if (binary)
    fprintf(o, "<td>%.0f/%.0f</td><td>-</td>", num(r, "clean_detected"), num(r, "positives"));
  fprintf(o, "<td colspan='6'></td></tr>\n");
  cJSON_ArrayForEach(row, rows) {
    fprintf(o, "<tr><td>");
    esc(o, str(row, "attack"));
    fprintf(o, " %s</td><td>", hstr(row, "norm"));
    eps_text(o, num(row, "eps"), bits, str(row, "norm"));
    fprintf(o, "</td><td>%.2f%%</td><td>%.2f%%</td><td>%.3f</td>", 100 * num(row, "accuracy"),
            100 * num(row, "balanced_accuracy"), num(row, "auc"));
    if (binary)
      fprintf(o, "<td>%.0f/%.0f</td><td>%.0f</td>", num(row, "positives_detected"),
              num(r, "positives"), num(row, "missed"));
    fprintf(o,
            "<td>%.1f</td><td>%.1f%%</td><td>%.4g</td><td>%.4f</td><td>%.2f</td><td>%.3f</td>"
            "</tr>\n",
            num(row, "drop_pct"), 100 * num(row, "success_rate"), num(row, "mean_linf"),
            num(row, "mean_ssim"), num(row, "mean_psnr"), num(row, "mean_confidence"));
  }
  fprintf(o, "</table></div>\n");
  if (cJSON_GetObjectItem(r, "clean_volume_accuracy")) {
    fprintf(o,
            "<p>Per volume (%.0f volumes): a volume's class is the argmax of the mean of its "
            "slices' class probabilities, each slice attacked in its own eps ball. Clean "
            "volume accuracy <b>%.2f%%</b>; under attack:</p>\n<div class='scroll'><table><tr>"
            "<th>attack</th><th>eps</th><th>volume accuracy</th></tr>\n",
            num(r, "volumes_labelled"), 100 * num(r, "clean_volume_accuracy"));
    cJSON_ArrayForEach(row, rows) {
      fprintf(o, "<tr><td>");
      esc(o, str(row, "attack"));
      fprintf(o, " %s</td><td>", hstr(row, "norm"));
      eps_text(o, num(row, "eps"), bits, str(row, "norm"));
      fprintf(o, "</td><td>%.2f%%</td></tr>\n", 100 * num(row, "volume_accuracy"));
    }
    fprintf(o, "</table></div>\n");
  }
  per_class_table(o, r);
  const cJSON *noise = cJSON_GetObjectItem(r, "noise");
  if (cJSON_GetArraySize(noise)) {
    fprintf(
        o,
        "<h2 id='noise'>Adversarial perturbation vs realistic noise at the same SSIM</h2><p>Each "
        "noise is calibrated so its mean SSIM to the clean images equals that of the "
        "adversarial images at the same eps (paper 002 [2]). Noise of that size barely "
        "moves the accuracy; the attack does.</p>\n<div class='scroll'><table><tr><th>"
        "noise</th><th>matched eps</th><th>level</th><th>SSIM</th><th>accuracy</th></tr>\n");
    const cJSON *n;
    cJSON_ArrayForEach(n, noise) {
      fprintf(o, "<tr><td>%s</td><td>", hstr(n, "noise"));
      eps_text(o, num(n, "matched_eps"), bits, "linf");
      fprintf(o, "</td><td>%.4g</td><td>%.4f</td><td>%.2f%%</td></tr>\n", num(n, "level"),
              num(n, "mean_ssim"), 100 * num(n, "accuracy"));
    }
    fprintf(o, "</table></div>\n");
  }
  const cJSON *checks = cJSON_GetObjectItem(r, "checks"), *c;
  if (cJSON_GetArraySize(checks)) {
    fprintf(
        o,
        "<h2 id='checks'>Self-checks against a failed evaluation</h2><p>After Carlini et al. 2019, "
        "\"On Evaluating Adversarial Robustness\" [3], plus the checks a trivial model "
        "would fail.</p><ul class='checks'>\n");
    cJSON_ArrayForEach(c, checks) {
      const int ok = flag(c, "passed");
      fprintf(o, "<li class='%s'><b>%s</b> ", ok ? "ok" : "warn", ok ? "ok" : "WARNING");
      esc(o, str(c, "check"));
      fprintf(o, ": ");
      esc(o, str(c, "message"));
      fprintf(o, "</li>\n");
    }
    fprintf(o, "</ul>\n");
  }
}

static void example_figure(FILE *o, const char *dir, const cJSON *x) {
  fprintf(o, "<figure class='example'><div class='trio'>");
  static const char *const keys[3] = {"clean_png", "adversarial_png", "difference_png"};
  static const char *const heads[3] = {"clean", "adversarial", "difference"};
  for (int k = 0; k < 3; k++) {
    fprintf(o, "<div><div class='colhead'>%s</div>", heads[k]);
    img(o, dir, str(x, keys[k]), heads[k], "big");
    fprintf(o, "</div>");
  }
  fprintf(o, "</div><figcaption><code>");
  esc(o, str(x, "file"));
  fprintf(o, "</code><br>true: <b>");
  esc(o, str(x, "label"));
  fprintf(o, "</b>; clean: ");
  esc(o, str(x, "clean_prediction"));
  fprintf(o, " (%.1f%%); adversarial: <b>", 100 * num(x, "clean_probability"));
  esc(o, str(x, "adversarial_prediction"));
  fprintf(o, "</b> (%.1f%%)</figcaption></figure>", 100 * num(x, "adversarial_probability"));
}

static void section_examples(FILE *o, const char *dir, const cJSON *e) {
  fprintf(o, "<h2 id='examples'>Examples</h2><p>%s %s eps ", hstr(e, "attack"), hstr(e, "norm"));
  eps_text(o, num(e, "eps"), num(e, "bits"), str(e, "norm"));
  fprintf(o,
          " among the first %.0f images: %.0f it flipped from a correct answer, and %.0f it "
          "did not. The difference is amplified %.0f&times; around mid-grey.</p>\n",
          num(e, "searched"), num(e, "flipped"), num(e, "held"), num(e, "difference_gain"));
  for (int pass = 0; pass < 2; pass++) {
    int any = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(e, "examples")) {
      if (flag(x, "flipped") != !pass) continue;
      if (!any)
        fprintf(o, "<h3>%s</h3><div class='grid'>", pass ? "Not flipped" : "Flipped by the attack");
      any = 1;
      example_figure(o, dir, x);
    }
    if (any) fprintf(o, "</div>\n");
  }
}

/* A triage row's cells from the prediction on: confidence, minimal eps, what it flips to,
 * whether it is flagged (images and volumes alike). */
static void fragile_cells(FILE *o, const cJSON *t, const cJSON *it, double bits) {
  fprintf(o, "<td>");
  esc(o, str(it, "predicted"));
  fprintf(o, "</td><td>%.3f</td><td>", num(it, "confidence"));
  const cJSON *e = cJSON_GetObjectItem(it, "min_eps");
  if (cJSON_IsNumber(e))
    eps_text(o, e->valuedouble, bits, "linf");
  else
    fprintf(o, "&gt; %.3g", num(t, "eps_max"));
  fprintf(o, "</td><td>");
  esc(o, str(it, "flips_to"));
  fprintf(o, "</td><td>%s</td>", flag(it, "flagged") ? "review" : "");
}

static void section_triage(FILE *o, const char *dir, const cJSON *t) {
  const double bits = num(t, "bits");
  const int labelled = flag(t, "labelled");
  fprintf(o,
          "<h2 id='triage'>Triage by adversarial sensitivity</h2><p>For every image, the smallest "
          "%s eps that changes the prediction ",
          hstr(t, "attack"));
  const cJSON *method = cJSON_GetObjectItem(t, "method");
  if (cJSON_IsString(method) && !strcmp(method->valuestring, "minimal-norm"))
    fprintf(o,
            "(the norm of the smallest adversarial point one %.0f-step minimal-norm run finds, "
            "up to %.3g: FMN, Pintor et al. 2021; paper 001 [1], Table 2, bisects instead). ",
            num(t, "iterations"), num(t, "eps_max"));
  else
    fprintf(o, "(bisection to %.2g below %.3g; paper 001 [1], Table 2). ", num(t, "tolerance"),
            num(t, "eps_max"));
  fprintf(o, "The most fragile %.0f%% (%.0f images) are flagged for a human to read.",
          100 * num(t, "flag_fraction"), num(t, "n_flagged"));
  if (!labelled) fprintf(o, " The images are unlabelled: no accuracy, only the ranking.");
  fprintf(o, "</p>\n");
  const cJSON *def = cJSON_GetObjectItem(t, "deferral");
  if (labelled && def) {
    Series s[8];
    int ns = 0;
    const cJSON *sc;
    cJSON_ArrayForEach(sc, def) {
      if (ns == 8) break;
      s[ns] = (Series){.name = sc->string};
      const cJSON *p;
      cJSON_ArrayForEach(p, cJSON_GetObjectItem(sc, "points")) if (s[ns].n < 64) {
        s[ns].x[s[ns].n] = num(p, "deferred");
        s[ns].y[s[ns].n++] = num(p, "accuracy");
      }
      ns++;
    }
    const Chart chart = {"Accuracy of the images kept vs share deferred to a human",
                         "share of images deferred (most doubtful first)",
                         "accuracy of the rest",
                         1,
                         0,
                         0.2,
                         "20% (paper 001)"};
    report_svg_chart(o, &chart, s, ns);
    fprintf(o,
            "<p>Deferral by the smallest flipping eps (adversarial) against the baselines a "
            "user would try first: low softmax confidence, small margin between the two top "
            "logits, high predictive entropy.</p><div class='scroll'><table><tr><th>deferred "
            "by</th>");
    static const int at[6] = {0, 2, 4, 6, 8, 10};
    for (int i = 0; i < 6; i++) fprintf(o, "<th>%s%d%%</th>", at[i] == 4 ? "<b>" : "", 5 * at[i]);
    fprintf(o, "<th>mean 0-50%%</th></tr>\n");
    cJSON_ArrayForEach(sc, def) {
      fprintf(o, "<tr><td>");
      esc(o, sc->string);
      fprintf(o, "</td>");
      const cJSON *pts = cJSON_GetObjectItem(sc, "points");
      for (int i = 0; i < 6; i++) {
        const cJSON *p = cJSON_GetArrayItem(pts, at[i]);
        fprintf(o, "<td%s>%.1f%% <span class='grey'>(%.1f%%)</span></td>",
                at[i] == 4 ? " class='mark'" : "", 100 * num(p, "accuracy"),
                100 * num(p, "balanced_accuracy"));
      }
      fprintf(o, "<td>%.4f</td></tr>\n", num(sc, "auc"));
    }
    fprintf(o,
            "</table></div><p class='grey'>accuracy of the images kept (balanced accuracy in "
            "brackets)</p>\n");
  }
  fprintf(o,
          "<h3>Most fragile images</h3><div class='scroll'><table><tr><th>rank</th><th>image"
          "</th><th>file</th>%s<th>predicted</th><th>confidence</th><th>minimal eps</th><th>"
          "flips to</th><th>flagged</th>%s</tr>\n",
          labelled ? "<th>true</th>" : "", labelled ? "<th>already wrong</th>" : "");
  int rank = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(t, "images")) {
    if (++rank > 30) break;
    fprintf(o, "<tr><td>%d</td><td>", rank);
    img(o, dir, str(it, "png"), str(it, "file"), "thumb");
    fprintf(o, "</td><td><code>");
    esc(o, str(it, "file"));
    fprintf(o, "</code></td>");
    if (labelled) {
      fprintf(o, "<td>");
      esc(o, str(it, "true"));
      fprintf(o, "</td>");
    }
    fragile_cells(o, t, it, bits);
    if (labelled) fprintf(o, "<td>%s</td>", flag(it, "misclassified") ? "<b>yes</b>" : "");
    fprintf(o, "</tr>\n");
  }
  fprintf(o, "</table></div><p>Every image, ranked: <a href='triage.csv'>triage.csv</a>.</p>\n");
  const cJSON *vols = cJSON_GetObjectItem(t, "volumes");
  if (!cJSON_GetArraySize(vols)) return;
  fprintf(o,
          "<h3>Most fragile volumes</h3><p>A volume's class is the argmax of the mean of its "
          "slices' class probabilities; its minimal eps is the smallest at which attacking every "
          "slice (each in its own eps ball, away from the volume's class) changes it. %.0f "
          "flagged for review.",
          num(t, "n_volumes_flagged"));
  if (cJSON_GetObjectItem(t, "volume_accuracy_all"))
    fprintf(o, " Volume accuracy %.1f%%, %.1f%% without the flagged volumes.",
            100 * num(t, "volume_accuracy_all"), 100 * num(t, "volume_accuracy_aware"));
  fprintf(o,
          "</p><div class='scroll'><table><tr><th>rank</th><th>volume</th><th>slices</th>"
          "<th>true</th><th>predicted</th><th>confidence</th><th>minimal eps</th><th>flips "
          "to</th><th>flagged</th></tr>\n");
  rank = 0;
  cJSON_ArrayForEach(it, vols) {
    if (++rank > 30) break;
    fprintf(o, "<tr><td>%d</td><td><code>", rank);
    esc(o, str(it, "volume"));
    fprintf(o, "</code></td><td>%.0f</td><td>", num(it, "slices"));
    esc(o, str(it, "true"));
    fprintf(o, "</td>");
    fragile_cells(o, t, it, bits);
    fprintf(o, "</tr>\n");
  }
  fprintf(o,
          "</table></div><p>Every volume: <a href='triage_volumes.csv'>triage_volumes.csv</a>."
          "</p>\n");
}

static void section_saliency(FILE *o, const char *dir, const cJSON *sal) {
  fprintf(o,
          "<h2 id='saliency'>Where the model looks</h2><p>Saliency of the predicted class, drawn "
          "over the "
          "image: the gradient of its score with respect to each pixel (vanilla; Simonyan et "
          "al. 2014) and its average over %.0f noisy copies (SmoothGrad, Smilkov et al. 2017; "
          "noise std %.2g), before and after %s eps %.4g (paper 004 [4], Figs 3-4). Red to "
          "white = the pixels that move the decision most. A robust model's maps stay on the "
          "lesion and change little under attack.</p>\n<div class='scroll'><table class='sal'>"
          "<tr><th>image</th><th>clean</th><th>gradient</th><th>SmoothGrad</th><th>attacked"
          "</th><th>gradient</th><th>SmoothGrad</th></tr>\n",
          num(sal, "smoothgrad_samples"), num(sal, "smoothgrad_sigma"), hstr(sal, "attack"),
          num(sal, "eps"));
  const cJSON *e;
  static const char *const keys[6] = {
      "clean_png",       "clean_gradient_png",       "clean_smoothgrad_png",
      "adversarial_png", "adversarial_gradient_png", "adversarial_smoothgrad_png"};
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(sal, "images")) {
    fprintf(o, "<tr><td><code>");
    esc(o, str(e, "file"));
    fprintf(o, "</code><br>true: ");
    esc(o, str(e, "label"));
    fprintf(o, "</td>");
    for (int p = 0; p < 6; p++) {
      fprintf(o, "<td>");
      img(o, dir, str(e, keys[p]), keys[p], "mid");
      if (p == 0 || p == 3) {
        fprintf(o, "<br>");
        esc(o, str(e, p ? "adversarial_prediction" : "clean_prediction"));
      }
      fprintf(o, "</td>");
    }
    fprintf(o, "</tr>\n");
  }
  fprintf(o, "</table></div>\n");
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
          "<h2 id='embedding'>Feature space: clean vs attacked</h2><p>Penultimate-layer features "
          "of %d images "
          "in the 2-D PCA of the clean ones; each clean point (circle) is joined to its %s eps "
          "%.4g version (cross); colour = the class the model predicts (paper 002 [2] Fig. 3, "
          "paper 004 [4] Fig. 5). Attacked points that change colour crossed the decision "
          "boundary.</p>\n",
          n, str(emb, "attack"), num(emb, "eps"));
  const int W = 560, H = 420, L = 52, B = 44, M = 14, legend = 150;
  const int pw = W - L - M, ph = H - B - M;
  fprintf(o,
          "<svg class='chart' viewBox='0 0 %d %d' xmlns='http://www.w3.org/2000/svg' role='img'>"
          "<title>feature embedding</title><rect width='%d' height='%d' fill='white'/>"
          "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#333'/>",
          W + legend, H, W + legend, H, L, M, pw, ph);
  for (int g = 0; g <= 4; g++) { /* axes with ticks in PCA units */
    const double xv = xmin + (xmax - xmin) * g / 4, yv = ymin + (ymax - ymin) * g / 4;
    fprintf(o, "<text x='%.1f' y='%d' font-size='10' text-anchor='middle'>%.3g</text>",
            L + pw * g / 4.0, M + ph + 14, xv);
    fprintf(o, "<text x='%d' y='%.1f' font-size='10' text-anchor='end'>%.3g</text>", L - 4,
            M + ph - ph * g / 4.0 + 3, yv);
  }
  fprintf(o,
          "<text x='%d' y='%d' font-size='12' text-anchor='middle'>PC 1 (%.0f%% of the "
          "variance)</text><text transform='translate(14 %d) rotate(-90)' font-size='12' "
          "text-anchor='middle'>PC 2 (%.0f%%)</text>",
          L + pw / 2, H - 8, 100 * item(ev, 0), M + ph / 2, 100 * item(ev, 1));
  const cJSON *first = cJSON_GetArrayItem(pts, 0);
  for (int i = 0; i < n && first; i++) {
    const cJSON *a = cJSON_GetArrayItem(pts, i), *b = cJSON_GetArrayItem(pts, n + i);
    const int pa = class_of(a), pb = class_of(b);
    const double ax = L + pw * (num(a, "x") - xmin) / (xmax - xmin);
    const double ay = M + ph - ph * (num(a, "y") - ymin) / (ymax - ymin);
    const double bx = L + pw * (num(b, "x") - xmin) / (xmax - xmin);
    const double by = M + ph - ph * (num(b, "y") - ymin) / (ymax - ymin);
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
  fprintf(o, "<h2 id='compare'>Model comparison</h2><p>%d models on <code>",
          cJSON_GetArraySize(models));
  esc(o, base_name(str(c, "data")));
  fprintf(o,
          "</code> (%s split, %.0f images), the same images for all, ranked by robust balanced "
          "accuracy: the mean over the eps grid of the worst balanced accuracy any attack leaves "
          "(a constant answer scores 50%% on two classes, whatever its accuracy). Under each "
          "attack: balanced accuracy, accuracy in brackets. Median eps: half the images flip "
          "below it (triage, bound %.3g). Papers 002-004 [2,4] compare models this way.</p>\n",
          hstr(c, "split"), num(c, "n"), num(c, "triage_eps_max"));
  fprintf(o,
          "<div class='scroll'><table><tr><th>rank</th><th>model</th><th>arch</th>"
          "<th>training</th><th>clean</th><th>balanced</th>");
  const cJSON *first = cJSON_GetArrayItem(models, 0), *row;
  cJSON_ArrayForEach(row, cJSON_GetObjectItem(first, "rows")) {
    fprintf(o, "<th>");
    esc(o, str(row, "attack"));
    fprintf(o, " ");
    eps_text(o, num(row, "eps"), num(c, "bits"), str(row, "norm"));
    fprintf(o, "</th>");
  }
  fprintf(o,
          "<th>robust balanced</th><th>balanced halves at eps</th><th>median eps</th>"
          "<th>without 20%% most fragile</th></tr>\n");
  for (int rank = 1; rank <= cJSON_GetArraySize(models); rank++) cJSON_ArrayForEach(m, models) {
      if ((int)num(m, "rank") != rank) continue;
      fprintf(o, "<tr%s><td>%d</td><td>",
              rank == 1 && !flag(m, "near_chance") ? " class='best'" : "", rank);
      esc(o, str(m, "name"));
      if (flag(m, "near_chance")) fprintf(o, " <b class='warn'>near chance</b>");
      fprintf(o, "</td><td>");
      esc(o, str(m, "arch"));
      fprintf(o, "</td><td style='text-align:left'>");
      training_text(o, cJSON_GetObjectItem(m, "training"));
      fprintf(o, "</td><td>%.2f%%</td><td>%.2f%%</td>", 100 * num(m, "clean_accuracy"),
              100 * num(m, "clean_balanced_accuracy"));
      cJSON_ArrayForEach(row, cJSON_GetObjectItem(m, "rows"))
          fprintf(o, "<td>%.1f%% <span class='grey'>(%.1f%%)</span></td>",
                  100 * num(row, "balanced_accuracy"), 100 * num(row, "accuracy"));
      fprintf(o, "<td><b>%.2f%%</b></td><td>", 100 * num(m, "robust_balanced_accuracy"));
      const cJSON *half = cJSON_GetObjectItem(m, "balanced_halving_eps");
      if (cJSON_IsNumber(half))
        eps_text(o, half->valuedouble, num(c, "bits"), "linf");
      else
        fprintf(o, "not reached");
      fprintf(o, "</td>");
      const cJSON *med = cJSON_GetObjectItem(m, "min_eps_median");
      if (!med)
        fprintf(o, "<td>-</td><td>-</td></tr>\n");
      else
        fprintf(o, "<td>%s%.4g</td><td>%.2f%%</td></tr>\n", cJSON_IsNull(med) ? "&gt; " : "",
                cJSON_IsNull(med) ? num(c, "triage_eps_max") : med->valuedouble,
                100 * num(m, "accuracy_aware"));
    }
  fprintf(o, "</table></div>\n");
  /* one chart per attack, a curve per model (balanced accuracy) */
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
      *cur = (Series){.name = str(m, "name"), .n = 1};
      cur->y[0] = num(m, "clean_balanced_accuracy");
      cJSON_ArrayForEach(row, cJSON_GetObjectItem(m, "rows")) {
        if (strcmp(str(row, "attack"), attacks[a]) != 0 || cur->n >= 64) continue;
        cur->x[cur->n] = num(row, "eps");
        cur->y[cur->n++] = num(row, "balanced_accuracy");
      }
    }
    char title[64];
    snprintf(title, sizeof title, "Balanced accuracy under %s", attacks[a]);
    const Chart chart = {title,
                         "eps on the [0,1] pixel scale (grey levels below)",
                         "balanced accuracy",
                         0,
                         data_grey_step(bits_of(num(c, "bits"))),
                         0,
                         ""};
    report_svg_chart(o, &chart, s, ns);
  }
  const cJSON *t = cJSON_GetObjectItem(c, "transfer");
  if (!t) return;
  fprintf(o,
          "<h3>Transfer (black-box) matrix</h3><p>%s, %s eps %.4g, crafted on the row's model and "
          "shown to the column's: accuracy of the column's model (paper 002 [2], Table 2). The "
          "diagonal is the white-box attack.</p><div class='scroll'><table><tr><th>source \\ "
          "target</th>",
          hstr(t, "attack"), hstr(t, "norm"), num(t, "eps"));
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
  fprintf(o, "</table></div>\n");
}

static const char *const style =
    "body{font-family:sans-serif;max-width:1100px;margin:0 auto;padding:0 12px 2em;color:#222;"
    "line-height:1.4}h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em}"
    ".headline{background:#f4f7fb;border:1px solid #c9d6e8;border-radius:6px;padding:4px 14px}"
    ".headline .deploy{font-size:1.1em;font-weight:bold}.warn{color:#b00}"
    ".scroll{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;"
    "padding:3px 7px;text-align:right;vertical-align:top}th{background:#f3f3f3}"
    "td:first-child{text-align:left}tr.best{background:#eef8ee}td.mark{background:#fff6d8}"
    ".grey{color:#666;font-size:90%}code{font-size:90%;word-break:break-all}"
    ".checks li.warn{color:#b00}.checks li.ok{color:#060}"
    ".grid{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;font-size:12px;max-width:100%}"
    ".trio{display:flex;flex-wrap:wrap;gap:4px}.colhead{font-size:11px;color:#555}"
    "img{image-rendering:pixelated;border:1px solid #999;max-width:100%;height:auto}"
    "img.big{width:160px}img.thumb,img.mid{width:160px;max-width:none}"
    "svg.chart{width:100%;max-width:760px;height:auto;display:block}"
    ".sal td{text-align:center}";

Status report_render(const char *dir, MrError *err) {
  cJSON *results = read_json(dir, "results.json"), *examples = read_json(dir, "examples.json");
  cJSON *triage = read_json(dir, "triage.json"), *compare = read_json(dir, "compare.json");
  cJSON *saliency = read_json(dir, "saliency.json"), *embedding = read_json(dir, "embedding.json");
  cJSON *seg = read_json(dir, "seg_results.json"),
        *seg_examples = read_json(dir, "seg_examples.json");
  cJSON *seg_compare = read_json(dir, "seg_compare.json"),
        *seg_triage = read_json(dir, "seg_triage.json");
  cJSON *rad_attack = read_json(dir, "radiomics_attack.json"),
        *rad_stability = read_json(dir, "radiomics_stability.json");
  cJSON *certify = read_json(dir, "certify.json");
  window_width = 0;
  read_window(results), read_window(triage), read_window(compare);
  if (!results && !triage && !compare && !saliency && !embedding && !seg && !seg_compare &&
      !seg_triage && !rad_attack && !rad_stability && !certify) {
    cJSON_Delete(examples), cJSON_Delete(seg_examples);
    return mr_error_set(err, STATUS_ERR_IO,
                        "%s: no results.json, triage.json, compare.json, saliency.json, "
                        "seg_results.json, radiomics_attack.json or certify.json (run eval, "
                        "triage, compare, saliency, radiomics attack or certify first)",
                        dir);
  }
  char path[4300];
  snprintf(path, sizeof path, "%s/report.html", dir);
  AtomicFile af;
  FILE *o = atomic_open(&af, path, "w", err) == STATUS_OK ? af.f : NULL;
  if (!o) {
    cJSON_Delete(results), cJSON_Delete(examples), cJSON_Delete(triage), cJSON_Delete(compare);
    cJSON_Delete(saliency), cJSON_Delete(embedding);
    cJSON_Delete(seg), cJSON_Delete(seg_examples), cJSON_Delete(seg_compare);
    cJSON_Delete(seg_triage), cJSON_Delete(rad_attack), cJSON_Delete(rad_stability);
    cJSON_Delete(certify);
    return err ? err->status : STATUS_ERR_IO;
  }
  fprintf(o,
          "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
          "content='width=device-width, initial-scale=1'><title>medrobust report</title>"
          "<style>%s</style></head><body><h1>medrobust robustness report</h1>\n",
          style);
  if (results || triage || compare) headline(o, results, triage, compare);
  if (compare) section_compare(o, compare);
  if (results) section_sweep(o, results);
  if (examples) section_examples(o, dir, examples);
  if (triage) section_triage(o, dir, triage);
  if (saliency) section_saliency(o, dir, saliency);
  if (embedding) section_embedding(o, embedding);
  if (seg || seg_compare || seg_triage)
    report_segment_sections(o, dir, seg, seg_examples, seg_compare, seg_triage);
  if (rad_attack || rad_stability)
    report_radiomics_sections(o, dir, rad_attack, results, rad_stability);
  if (certify) report_certify_section(o, certify);
  fprintf(o,
          "<h2 id='references'>References</h2><ol class='refs'><li>Joel et al. 2022, Using "
          "adversarial images to "
          "assess the robustness of deep learning models trained on diagnostic images in "
          "oncology, JCO Clin Cancer Inform (attacks at eps 0.001-0.006, adversarial training, "
          "triage).</li><li>Paschali et al. 2018, Generalizability vs. robustness: adversarial "
          "examples for medical imaging, MICCAI (noise at matched SSIM, %% drop, transfer).</li>"
          "<li>Carlini et al. 2019, On evaluating adversarial robustness (the self-checks).</li>"
          "<li>Rodriguez et al. 2022, BMC Med Inform Decis Mak (model complexity, saliency, "
          "feature space).</li><li>Xie et al. 2017, Adversarial examples for semantic "
          "segmentation and object detection, ICCV (DAG).</li><li>Adversarial radiomics, a "
          "perspective essay (radiomic features as a target; adversarial vs irreproducible)."
          "</li><li>Cohen, Rosenfeld, Kolter 2019, Certified adversarial robustness via "
          "randomized smoothing, ICML (certify).</li></ol><p class='grey'>Rendered from "
          "the JSON files in this folder; "
          "every number above is read from them, none recomputed. Images are embedded: this file "
          "stands alone.</p></body></html>\n");
  cJSON_Delete(results), cJSON_Delete(examples), cJSON_Delete(triage), cJSON_Delete(compare);
  cJSON_Delete(saliency), cJSON_Delete(embedding);
  cJSON_Delete(seg), cJSON_Delete(seg_examples), cJSON_Delete(seg_compare);
  cJSON_Delete(seg_triage), cJSON_Delete(rad_attack), cJSON_Delete(rad_stability);
  cJSON_Delete(certify);
  return atomic_commit(&af, err);
}
