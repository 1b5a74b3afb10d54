/* medrobust export: a model file (any family, trained or hardened here, or
 * an import) as an ONNX model, so it goes back to PyTorch and ONNX Runtime
 * users with its preprocessing inside and its class names attached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

int cmd_export(int argc, char **argv) {
  const char *model = NULL, *out = NULL;
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "the model file (.safetensors or .onnx)"},
      {"--out", OPT_STRING, &out, 0, 0, " M.onnx", "the ONNX file to write"},
      {0}};
  const CliPath path_roles[] = {{"--model", PATH_IN}, {"--out", PATH_OUT_FILE}, {0}};
  const CliSpec spec = {
      "export", "export --model M.safetensors --out M.onnx",
      "Writes a model as ONNX (opset 13): input 'input' (N,C,H,W) [0,1] pixels, with the\n"
      "model's normalisation as its first nodes; output 'logits' (N,K) or (N,K,H,W) before\n"
      "softmax. Weights keep their PyTorch state_dict names; class names and the training\n"
      "and data records go in the model's metadata_props. Importing the file back gives\n"
      "the same outputs, bit for bit.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !out) {
    fprintf(stderr, "medrobust export: --model and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  MrError err = {0};
  Net *net = model_load(model, &err);
  if (!net || onnx_export(net, out, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    net_free(net);
    return EXIT_RUNTIME;
  }
  const ModelSpec *s = net_spec(net);
  printf("%s -> %s: input %dx%dx%d, %d classes, %d ops, %zu parameters\n", model, out, s->in_c,
         s->in_h, s->in_w, s->n_classes, net_layer_count(net), net_param_count(net));
  net_free(net);
  return 0;
}
