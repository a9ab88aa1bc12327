"""Procedural basketball player crops in the official layout: an honest, labelled stand-in.

The real archive cannot be fetched everywhere (never in CI), yet every stage must run and be
measured from a fresh machine. `generate` writes, under `<data_dir>/data_reid/`:

- `reid_training/{player}_{sequence}_{frame}.jpeg`, `reid_test/{query,gallery}/...` (same
  naming; frame `00` is the query, frames `01`-`19` the gallery);
- `reid_challenge/{query,gallery}/{id}.jpeg` with anonymous integer ids, unique across query
  and gallery, and `reid_challenge/ground_truth.csv` with columns
  `img_id,player,sequence,frame,img_type` (`img_id` is the path relative to `data_reid/`, as in
  `challenge_df.csv`; `img_type` is `q` or `g`), so a challenge submission can be scored locally;
- `synthetic.json` (the marker: generator, size, seed, counts) and
  `synthetic_contact_sheet.png` (a few test players: the query, then gallery frames).

A sequence is 20 frames of 8-12 people in one arena (its own floor, boards, crowd, court
decals and camera softness, noise and compression), standing on the stretch of court its
camera follows: two teams in their kits, colours and a shirt design (teammates share the
jersey, so kit alone cannot separate them), sometimes referees. Identity lives in the jersey
number (front and back, drawn with a real font), skin, hair, build, shoes, socks and
accessories. Boxes hug the pose like a detector's; pose, viewpoint, scale, box margins,
occlusion, blur, spotlight and shadow gradients and JPEG quality change from frame to frame.
Player and sequence numbers are global: training players first, then test players, then
challenge players (whose numbers appear only in the ground truth).

Every sequence draws its randomness from (seed, split, sequence index) alone, so the files are
byte-identical for a seed whatever the number of worker processes.

Modules, each importing only those above it: `palette` (colours, letters, fonts), `planning`
(counts, sequences, file names), `identities` (kits and looks), `arena` (the background),
`poses`, `skeleton` (joint positions), `drawing` (a person), `camera` (a crop's finish),
`crops` (a sequence's crops), `preview` (the contact sheet), `dataset` (the files on disk), and
`clips` (whole game clips in the MOTChallenge layout, and crops of other clips to train a linker).
"""

from reid.splits import GROUND_TRUTH
from reid.synthetic.dataset import CONTACT_SHEET, MARKER, generate, ground_truth_rows
from reid.synthetic.planning import FRAMES, SIZES, SPLITS, Person, Plan, Sequence, Size, plan

__all__ = ["CONTACT_SHEET", "FRAMES", "GROUND_TRUTH", "MARKER", "SIZES", "SPLITS", "Person", "Plan", "Sequence", "Size",
           "generate", "ground_truth_rows", "plan"]
