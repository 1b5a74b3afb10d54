/* medrobust saliency: where the model looks, before and after an attack
 * (vanilla gradient and SmoothGrad maps), and the clean and adversarial
 * images in a 2-D PCA of the penultimate features; into DIR/report.html. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

int cmd_saliency(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL, *attack = "pgd",
             *norm = "linf";
  int count = 6, samples = 50, embed = 400, quiet = 0, resume = 0;
  float sigma = 0.15f, eps = 0.004f;
  uint64_t seed = 1;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " DIR", "output folder (required)"},
      {"--attack", OPT_STRING, &attack, 0, 0, " A", "attack making the adversarial images"},
      {"--eps", OPT_FLOAT, &eps, 0, 1e6, " E", "its eps on [0,1] pixels (4/255 accepted)"},
      {"--norm", OPT_STRING, &norm, 0, 0, " linf|l2", "its norm"},
      {"--count", OPT_INT, &count, 0, 1000, " N", "images with saliency maps"},
      {"--samples", OPT_INT, &samples, 1, 10000, " N", "SmoothGrad: noisy copies per image"},
      {"--sigma", OPT_FLOAT, &sigma, 0, 10, " S",
       "SmoothGrad: noise std on the [0,1] scale (Smilkov et al.: 10-20% of the range)"},
      {"--embed", OPT_INT, &embed, 0, 1000000, " N", "images in the feature embedding (0: none)"},
      {"--seed", OPT_U64, &seed, 0, 0, " S", "random starts and SmoothGrad noise"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {
      {"--model", PATH_IN}, {"--data", PATH_IN}, {"--out", PATH_OUT_DIR}, {0}};
  const CliSpec spec = {
      "saliency", "saliency --model M --data D --out DIR [options]",
      "Saliency maps of the predicted class (vanilla gradient, Simonyan et al. 2014, and\n"
      "SmoothGrad, Smilkov et al. 2017) for clean images and their adversarial versions,\n"
      "as in paper 004 Figs 3-4; and the penultimate-layer features of clean and\n"
      "adversarial images in the 2-D PCA of the clean ones (paper 002 Fig. 3, paper 004\n"
      "Fig. 5; PCA rather than t-SNE so adversarial points land in the clean map).\n"
      "Writes DIR/saliency.json, DIR/saliency/*.png, DIR/embedding.json, DIR/report.html.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust saliency: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  const int kind = attack_parse(attack);
  if (kind < 0 || !attack_is_bounded((AttackKind)kind)) {
    fprintf(stderr,
            "medrobust saliency: --attack must be a bounded attack (fgsm, bim, pgd, ...)\n");
    return EXIT_USAGE;
  }
  AttackOptions o = attack_options_default((AttackKind)kind);
  if (!cli_parse_norm("saliency", norm, &o.norm)) return EXIT_USAGE;
  o.eps = eps, o.seed = seed;
  const int s_idx = cli_split("saliency", split);
  if (s_idx < 0) return EXIT_USAGE;
  char journal_path[4200];
  cli_journal_path(out, 1, journal_path, sizeof journal_path);
  if (cli_journal_check("saliency", journal_path, resume)) return EXIT_USAGE;
  if (!cli_make_dir(out)) return EXIT_RUNTIME;
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
  MrError err = {0};
  const Dataset *set = &data->split[s_idx];
  int code;
  Journal *journal =
      cli_journal_open("saliency", journal_path, resume, argc, argv, &net, 1, set, NULL, &code);
  if (!journal) {
    net_free(net);
    data_free(data);
    return code;
  }
  /* two steps, each a few seconds to a minute: a line per step with the time so far */
  CliProgress progress;
  cli_progress_init(&progress, quiet);
  cli_sweep_progress("saliency: vanilla gradient and SmoothGrad maps", 0, 2, &progress);
  /* the maps are one unit: their files are written (atomically) before it is journaled */
  Status st = STATUS_OK;
  if (!journal_restore(journal, "saliency-maps", NULL, 0)) {
    st = saliency_write(net, set, &o, count, samples, sigma, out, &err);
    if (st == STATUS_OK) st = journal_record(journal, "saliency-maps", NULL, 0, &err);
  }
  if (st == STATUS_OK && embed > 0 && set->n >= 3) {
    cli_sweep_progress("saliency: the feature embedding", 1, 2, &progress);
    st = embedding_write(net, set, &o, embed, out, journal, &err);
  }
  cli_progress_done(&progress);
  if (st == STATUS_OK) st = report_render(out, &err);
  int code_out = EXIT_RUNTIME;
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
  } else if ((code_out = cli_journal_finish("saliency", journal)) == 0)
    printf("saliency maps of %d images and a %d-image embedding (%s eps %g) in %s/report.html\n",
           count < set->n ? count : set->n, embed < set->n ? embed : set->n, attack, eps, out);
  net_free(net);
  data_free(data);
  return code_out;
}
