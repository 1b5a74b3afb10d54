/* medrobust import: an ONNX model (the user's own, trained anywhere) into a
 * medrobust model file with its preprocessing inside, so every attack,
 * triage, hardening and report works on it with exact input gradients. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

/* "a,b,c" -> up to 3 floats (one value fills all three); 0 on a bad list. */
static int parse_triple(const char *text, float out[3]) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", text);
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    double v;
    if (n == 3 || !cli_parse_number(tok, &v)) return 0;
    out[n++] = (float)v;
  }
  if (n == 1) out[1] = out[2] = out[0];
  return n == 1 || n == 3;
}

int cmd_import(int argc, char **argv) {
  const char *out = NULL, *mean = NULL, *std = NULL, *classes = NULL, *file[1] = {NULL};
  int n_pos = 0;
  OnnxImportOptions o = onnx_import_options_default();
  const CliOption options[] = {
      {"--out", OPT_STRING, &out, 0, 0, " M.safetensors", "the model file to write (required)"},
      {"--mean", OPT_STRING, &mean, 0, 0, " M[,M,M]",
       "per-channel mean the model subtracts from [0,1] pixels (torchvision: 0.485,0.456,0.406)"},
      {"--std", OPT_STRING, &std, 0, 0, " S[,S,S]", "per-channel std it divides by"},
      {"--input-scale", OPT_FLOAT, &o.input_scale, 0, 65535, " X",
       "the model takes pixels times X (255: 0..255 pixels); eps stays on [0,1]"},
      {"--size", OPT_INT, &o.size, 0, 4096, " N",
       "height and width when the file leaves them open"},
      {"--classes", OPT_STRING, &classes, 0, 0, " a,b,...", "class names, in output order"},
      {0}};
  const CliPath path_roles[] = {{CLI_POSITIONAL, PATH_IN}, {"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "import", "import MODEL.onnx --out M.safetensors [options]",
      "Reads an ONNX model into a medrobust model file: the graph mapped onto medrobust's\n"
      "ops (constants folded, the flatten chains PyTorch emits too), the weights by their\n"
      "names, the preprocessing inside the net so eps keeps meaning a [0,1] pixel budget.\n"
      "An op it cannot map exactly is refused, naming the node. A model file ending in\n"
      ".onnx is also accepted directly wherever --model is (no preprocessing then).",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, file, 1, &n_pos);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (n_pos != 1 || !out) {
    fprintf(stderr, "medrobust import: which .onnx file, and --out (see --help)\n");
    return EXIT_USAGE;
  }
  if ((mean && !parse_triple(mean, o.mean)) || (std && !parse_triple(std, o.std))) {
    fprintf(stderr, "medrobust import: --mean and --std take one or three numbers\n");
    return EXIT_USAGE;
  }
  for (int c = 0; c < 3; c++)
    if (!(o.std[c] > 0)) {
      fprintf(stderr, "medrobust import: --std must be > 0\n");
      return EXIT_USAGE;
    }
  if (o.input_scale > 0 && (mean || std)) {
    fprintf(stderr, "medrobust import: give --input-scale or --mean/--std, not both\n");
    return EXIT_USAGE;
  }
  char names_buf[4096], *names[MR_MAX_CLASSES + 1] = {0};
  if (classes) {
    snprintf(names_buf, sizeof names_buf, "%s", classes);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(names_buf, ",", &save); tok && n < MR_MAX_CLASSES;
         tok = strtok_r(NULL, ",", &save))
      names[n++] = tok;
    o.class_names = (const char *const *)names;
    o.n_classes = n;
  }
  MrError err = {0};
  Net *net = onnx_import(file[0], &o, &err);
  if (!net) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    return EXIT_RUNTIME;
  }
  if (classes && o.n_classes != net_num_classes(net)) {
    fprintf(stderr, "medrobust import: --classes names %d classes, the model answers %d\n",
            o.n_classes, net_num_classes(net));
    net_free(net);
    return EXIT_USAGE;
  }
  char record[MR_TRAINING_LEN];
  snprintf(record, sizeof record, "{\"imported\":\"onnx\",\"input_scale\":%g}", o.input_scale);
  net_set_training_info(net, record);
  if (safetensors_save_net(net, out, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    net_free(net);
    return EXIT_RUNTIME;
  }
  const ModelSpec *s = net_spec(net);
  printf("%s -> %s: input %dx%dx%d, %d classes, %d ops, %zu parameters\n", file[0], out, s->in_c,
         s->in_h, s->in_w, s->n_classes, net_layer_count(net), net_param_count(net));
  net_free(net);
  return 0;
}
