/* Option parsing for every subcommand from one table: each option's type,
 * target, range and help; usage prints every option with its default (the
 * target's value before parsing). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void print_default(FILE *f, const CliOption *o) {
  switch (o->type) {
    case OPT_INT:
      fprintf(f, " (default %d)", *(int *)o->target);
      break;
    case OPT_U64:
      fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)o->target);
      break;
    case OPT_FLOAT:
      fprintf(f, " (default %g)", *(float *)o->target);
      break;
    case OPT_STRING:
      if (*(const char **)o->target) fprintf(f, " (default %s)", *(const char **)o->target);
      break;
    case OPT_FLAG:
      break;
  }
}

void cli_usage(FILE *f, const CliSpec *spec) {
  fprintf(f, "usage: medrobust %s\n\n%s\n\noptions:\n", spec->usage, spec->summary);
  for (const CliOption *o = spec->options; o && o->name; o++) {
    char left[64];
    snprintf(left, sizeof left, "%s%s", o->name,
             o->type == OPT_FLAG ? ""
             : o->metavar        ? o->metavar
                                 : " X");
    fprintf(f, "  %-22s %s", left, o->help);
    print_default(f, o);
    fputc('\n', f);
  }
  fprintf(f, "  %-22s %s\n", "--help", "this text");
}

static int parse_value(const char *cmd, const CliOption *o, const char *text) {
  if (!text) {
    fprintf(stderr, "medrobust %s: %s needs a value\n", cmd, o->name);
    return 0;
  }
  char *end;
  errno = 0;
  switch (o->type) {
    case OPT_INT: {
      long v = strtol(text, &end, 10);
      if (!*text || *end || errno || v < o->min || v > o->max) break;
      *(int *)o->target = (int)v;
      return 1;
    }
    case OPT_U64: {
      unsigned long long v = strtoull(text, &end, 10);
      if (!*text || *end || errno || text[0] == '-') break;
      *(uint64_t *)o->target = (uint64_t)v;
      return 1;
    }
    case OPT_FLOAT: {
      double v;
      if (!cli_parse_number(text, &v) || v < o->min || v > o->max) break;
      *(float *)o->target = (float)v;
      return 1;
    }
    case OPT_STRING:
      *(const char **)o->target = text;
      return 1;
    case OPT_FLAG:
      return 1;
  }
  if (o->type == OPT_U64)
    fprintf(stderr, "medrobust %s: %s expects a non-negative integer, got '%s'\n", cmd, o->name,
            text);
  else
    fprintf(stderr, "medrobust %s: %s expects a number in [%g, %g], got '%s'\n", cmd, o->name,
            o->min, o->max, text);
  return 0;
}

int cli_parse_norm(const char *cmd, const char *text, Norm *out) {
  if (strcmp(text, "linf") == 0 || strcmp(text, "l2") == 0) {
    *out = strcmp(text, "l2") == 0 ? NORM_L2 : NORM_LINF;
    return 1;
  }
  fprintf(stderr, "medrobust %s: --norm must be linf or l2, got '%s'\n", cmd, text);
  return 0;
}

int cli_parse_number(const char *text, double *out) {
  /* plain numbers and fractions such as 4/255 (the papers' eps notation) */
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || errno) return 0;
  if (*end == '/') {
    const char *den_text = end + 1;
    double den = strtod(den_text, &end);
    if (end == den_text || den == 0.0) return 0;
    v /= den;
  }
  if (*end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

static int cli_parse_args(const CliSpec *spec, int argc, char **argv, const char **positional,
                          int max_positional, int *n_positional);

/* path as realpath(its folder)/name, for an output that may not exist yet; 0 when its folder
 * does not exist either. */
static int canonical(const char *path, char *out, size_t n) {
  char dir[PATH_MAX], real[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (!realpath(dir, real)) return 0;
  snprintf(out, n, "%s/%s", real, slash ? slash + 1 : path);
  return 1;
}

/* The same file or folder: one inode when both exist, else the same canonical path. */
static int same_path(const char *a, const char *b) {
  struct stat sa, sb;
  if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  char ca[2 * PATH_MAX], cb[2 * PATH_MAX];
  return canonical(a, ca, sizeof ca) && canonical(b, cb, sizeof cb) && strcmp(ca, cb) == 0;
}

typedef struct {
  const char *what, *path; /* "--out" or "the argument", its value */
  CliPathRole role;
} NamedPath;

static int check_paths(const CliSpec *spec, const NamedPath *p, int n) {
  for (int i = 0; i < n; i++) {
    struct stat st;
    const int exists = stat(p[i].path, &st) == 0;
    if (p[i].role == PATH_OUT_FILE && exists && S_ISDIR(st.st_mode)) {
      fprintf(stderr, "medrobust %s: %s %s is a directory; it names a file to write\n", spec->name,
              p[i].what, p[i].path);
      return 0;
    }
    if (p[i].role == PATH_OUT_DIR && exists && !S_ISDIR(st.st_mode)) {
      fprintf(stderr, "medrobust %s: %s %s is a file; it names a folder to write into\n",
              spec->name, p[i].what, p[i].path);
      return 0;
    }
    if (p[i].role == PATH_IN) continue;
    for (int j = 0; j < n; j++)
      if (j != i && (p[j].role == PATH_IN || j < i) && same_path(p[i].path, p[j].path)) {
        fprintf(stderr, "medrobust %s: %s %s is also %s; refusing to overwrite it\n", spec->name,
                p[i].what, p[i].path, p[j].what);
        return 0;
      }
  }
  return 1;
}

int cli_parse(const CliSpec *spec, int argc, char **argv, const char **positional,
              int max_positional, int *n_positional) {
  const int rc = cli_parse_args(spec, argc, argv, positional, max_positional, n_positional);
  if (rc != CLI_OK) return rc;
  NamedPath paths[32];
  int n = 0;
  for (const CliPath *p = spec->paths; p && p->option && n < 32; p++) {
    if (strcmp(p->option, CLI_POSITIONAL) == 0) {
      for (int i = 0; n_positional && i < *n_positional && n < 32; i++)
        paths[n++] = (NamedPath){"the argument", positional[i], p->role};
      continue;
    }
    const CliOption *o = spec->options;
    while (o->name && strcmp(o->name, p->option) != 0) o++;
    if (o->name && o->type == OPT_STRING && *(const char **)o->target)
      paths[n++] = (NamedPath){o->name, *(const char **)o->target, p->role};
  }
  return check_paths(spec, paths, n) ? CLI_OK : CLI_USAGE_ERROR;
}

static int cli_parse_args(const CliSpec *spec, int argc, char **argv, const char **positional,
                          int max_positional, int *n_positional) {
  int np = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      cli_usage(stdout, spec);
      return CLI_HELP;
    }
    if (arg[0] == '-' && arg[1] == '-') {
      /* --name value, or --name=value (getopt_long's spelling) */
      const char *eq = strchr(arg, '=');
      const size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
      const CliOption *o = spec->options;
      while (o && o->name && (strlen(o->name) != name_len || strncmp(o->name, arg, name_len))) o++;
      if (!o || !o->name) {
        fprintf(stderr, "medrobust %s: unknown option '%.*s' (see 'medrobust %s --help')\n",
                spec->name, (int)name_len, arg, spec->name);
        return CLI_USAGE_ERROR;
      }
      if (o->type == OPT_FLAG) {
        if (eq) {
          fprintf(stderr, "medrobust %s: %s takes no value\n", spec->name, o->name);
          return CLI_USAGE_ERROR;
        }
        *(int *)o->target = 1;
        continue;
      }
      if (eq) {
        if (!parse_value(spec->name, o, eq + 1)) return CLI_USAGE_ERROR;
        continue;
      }
      if (!parse_value(spec->name, o, i + 1 < argc ? argv[i + 1] : NULL)) return CLI_USAGE_ERROR;
      i++;
      continue;
    }
    if (np >= max_positional) {
      fprintf(stderr, "medrobust %s: unexpected argument '%s' (see 'medrobust %s --help')\n",
              spec->name, arg, spec->name);
      return CLI_USAGE_ERROR;
    }
    positional[np++] = arg;
  }
  if (n_positional) *n_positional = np;
  return CLI_OK;
}
