/* The binary-safe standard suite, AutoAttack's recipe (Croce & Hein 2020)
 * with the DLR loss replaced by the C&W margin where there are only two
 * classes: APGD-CE, then APGD-DLR/margin, then Square, each on the images the
 * earlier ones did not fool; per image the first success is kept, so the
 * reported accuracy is the worst case over the three. */
#include <stdlib.h>
#include <string.h>

#include "attack.h"

Status attack_standard(AttackCtx *c, const AttackOptions *o, const float *x, const int *y,
                       float *x_adv) {
  const int B = c->batch, k = c->k;
  const AttackKind parts[3] = {ATTACK_APGD_CE, ATTACK_APGD_MARGIN, ATTACK_SQUARE};
  float *trial = attack_scratch(c, sizeof(float) * c->per * B),
        *probs = attack_scratch(c, sizeof(float) * k * B);
  int *fooled = attack_scratch(c, sizeof(int) * B);
  if (!trial || !probs || !fooled) {
    return STATUS_ERR_NOMEM;
  }
  Status s = STATUS_OK;
  for (int p = 0; p < 3 && s == STATUS_OK; p++) {
    AttackOptions sub = attack_options_default(parts[p]);
    sub.norm = o->norm, sub.eps = o->eps, sub.eps_each = c->eps, sub.seed = o->seed,
    sub.restarts = o->restarts;
    if (parts[p] == ATTACK_SQUARE && o->norm != NORM_LINF) continue; /* Square is L-inf only here */
    s = attack_run(c->net, &sub, x, y, B, trial, NULL);
    if (s != STATUS_OK) break;
    net_predict(c->net, trial, B, probs);
    for (int b = 0; b < B; b++) {
      const int best = argmax(probs + (size_t)b * k, k);
      /* the first attack's point for everyone, then any later success */
      if (!fooled[b] && (p == 0 || best != y[b]))
        memcpy(x_adv + c->per * b, trial + c->per * b, sizeof(float) * c->per);
      fooled[b] |= best != y[b];
    }
  }
  return s;
}
