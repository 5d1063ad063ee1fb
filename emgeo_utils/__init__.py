"""emgeo_utils: the shared package behind the emgeo notebooks.

Folders follow the notebooks' story over shared layers; imports only point down this list
(lowest first), and a folder never imports one listed after it:

    core/        paths, cache, seeding, jobs, stats, readers, files    (everything)
    models/      registry, loading, hooks, chat, batching, generation
    theory/      the exact identity and toy models                     (01)
    judges/      the EM rule, LLM judge, offline text judge            (00, 05)
    features/    activations, selection, cards                         (02)
    training/    LoRA fine-tuning                                      (00, 04, 05)
    organism/    world, datasets, pretraining, SAEs, judge, EM         (00)
    geometry/    similarity, set tests                                 (03, 04)
    experiment/  one interface: organism and real models               (00, 02-05)
    filtering/   ranking, potency, the screening command               (05)
    report/      notebook start-up, claims, plots, the notebook runner (all)

`tests/test_layering.py` checks the order.
"""

__version__ = "0.1.0"

# Before anything imports numpy or torch: the numerics mode is read by each library as it loads.
from emgeo_utils.core import numerics as _numerics  # noqa: E402  (imports neither)

_numerics.pin()
