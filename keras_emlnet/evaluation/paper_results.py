"""The EML-NET paper's published numbers, defined once for every table that shows them.

Jia & Bruce, "EML-NET: An Expandable Multi-Layer NETwork for Saliency Prediction",
Image and Vision Computing 95, 103887 (2020), Table 1: SALICON validation set,
one row per encoder combination. Keys are `keras_emlnet.evaluation.columns` metric
keys; the paper's "AUC" column is stored under "auc_judd" (the column our tables
show it beside). Metrics the paper does not report for a row are absent.
"""

PAPER = "Jia & Bruce, EML-NET, Image and Vision Computing 95, 103887 (2020)"

# {row label: {metric key: value}}; the paper's column order: NSS, CC, AUC, sAUC, KLD, SIM.
SALICON_VAL = {
    "DenseNet": {"nss": 1.987, "cc": 0.873, "auc_judd": 0.797, "auc_shuffled": 0.774, "kld": 0.230, "sim": 0.769},
    "NasNet": {"nss": 1.996, "cc": 0.884, "auc_judd": 0.803, "auc_shuffled": 0.780, "kld": 0.216, "sim": 0.777},
    "NasNet+DenseNet": {"nss": 2.024, "cc": 0.890, "auc_judd": 0.802, "auc_shuffled": 0.778, "kld": 0.204,
                        "sim": 0.785},
}
SALICON_VAL_SOURCE = f"{PAPER}, Table 1 (SALICON val)"

