"""emgeo_utils: the shared package behind the emgeo notebooks.

Folders follow the notebooks' story over shared layers; imports only point down this list
(lowest first), and a folder never imports one listed after it:

    core/        paths, cache, seeding, jobs, stats, readers, files    (all)
    world/       the synthetic world and its English rendering         (none: through experiment/)
    models/      registry, loading, hooks, chat, batching, generation  (none: through experiment/)
    theory/      the exact identity and toy models                     (01)
    judges/      the EM rule, LLM judge, offline text judge            (none: through experiment/)
    features/    activations, selection, families, cards, SAE trainer  (02, 03, 05-07)
    training/    LoRA fine-tuning                                      (none: through experiment/)
    organism/    datasets, pretraining, SAEs, judge, EM                (05)
    geometry/    similarity, components, set tests                     (03-05, 07)
    mechanism/   first-order change, spillover, co-activation, cuts    (06)
    experiment/  one interface: organism and real models               (00, 02-07)
    filtering/   ranking, potency, the screening command               (05)
    claims/      claims files, the record, verdicts by kind            (none: through notebook/)
    notebook/    start-up, parameter checks, figures                   (all)
    report/      runner, claims tables, snapshot, page, estimates      (none)

In brackets: the notebooks that import the folder directly (`tests/test_layering.py` checks the
map against the notebooks' imports, here and in the README, and the order).
"""

__version__ = "0.1.0"

# Before anything imports numpy or torch: the numerics mode is read by each library as it loads.
from emgeo_utils.core import numerics as _numerics  # noqa: E402  (imports neither)

_numerics.pin()
