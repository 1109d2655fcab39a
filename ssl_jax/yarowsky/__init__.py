"""The Yarowsky algorithm (ACL 1995) for word-sense disambiguation on Senseval data.

`senseval` reads the corpora, `decision_list` holds collocation features and
decision lists, `seeds` the ways to seed, `algorithm` the bootstrapping loop,
`stage` the `yarowsky` stage (`check_config`, `run`) that
`configs/yarowsky_senseval.py` names.
"""

from ssl_jax.yarowsky import algorithm, decision_list, seeds, senseval, stage

__all__ = ["algorithm", "decision_list", "seeds", "senseval", "stage"]
