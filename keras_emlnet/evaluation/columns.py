"""The metric columns of every evaluation table: keys, headers, order, direction.

Columns follow the MIT saliency benchmark's table order, which the EML-NET paper's MIT300 and
CAT2000 tables copy: AUC-Judd, SIM, EMD, AUC-Borji, sAUC, CC, NSS, KLD; IG (in the SALICON
table, absent from the MIT tables) is appended last. EMD and KLD are lower-is-better, the rest
higher-is-better. `evaluate` scores these keys and `tables` lays them out.
"""

# (key in keras_emlnet.metrics / results, column header), in table order.
METRIC_COLUMNS = (
    ("auc_judd", "AUC-Judd"),
    ("sim", "SIM"),
    ("emd", "EMD"),
    ("auc_borji", "AUC-Borji"),
    ("auc_shuffled", "sAUC"),
    ("cc", "CC"),
    ("nss", "NSS"),
    ("kld", "KLD"),
    ("info_gain", "IG"),
)
METRIC_KEYS = tuple(key for key, _ in METRIC_COLUMNS)
LOWER_IS_BETTER = frozenset({"emd", "kld"})
