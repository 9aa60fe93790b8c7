"""The paper run's stage graph, settings check and recipes (the run itself: tests/train/test_paper.py)."""

import dataclasses
import json

import pytest

from keras_emlnet.training import decoder_stage, encoder_stage, paper
from keras_emlnet.training.config import ConfigMismatchError


def test_full_config_is_the_papers_protocol(tmp_path):
    config = paper.paper_config(str(tmp_path / "salicon"), str(tmp_path / "run"))
    assert config.encoder == encoder_stage.ENCODER_RECIPE and config.decoder == decoder_stage.DECODER_RECIPE
    assert (config.decoder.learning_rate, config.decoder.lr_decay_epochs, config.decoder.epochs) == (0.01, (3,), 5)
    assert (config.encoder.learning_rate, config.encoder.lr_decay_epochs, config.encoder.epochs) == (0.01, (5,), 10)
    assert config.weights == encoder_stage.PRETRAINED and config.blur_sigma == 5.0
    assert config.eval_limit is None and config.experiments == ("densenet161", "nasnet", "combined")


def test_stage_graph_trains_each_needed_encoder_once_before_its_decoders(tmp_path):
    config = paper.paper_config(str(tmp_path / "salicon"), str(tmp_path / "run"), experiments=["combined", "nasnet"])
    stages = paper.plan_stages(config)
    assert [s.name for s in stages] == ["encoder_nasnet", "encoder_densenet161", "decoder_combined",
                                        "evaluate_combined", "decoder_nasnet", "evaluate_nasnet"]
    assert stages[2].settings["encoders"] == ["nasnet", "densenet161"]  # "NasNet + DenseNet", extractor order
    assert stages[0].folder == str(tmp_path / "run" / "encoders" / "nasnet")
    smoke = paper.paper_config(None, str(tmp_path / "smoke"), smoke=True, experiments=["densenet161"])
    assert [s.name for s in paper.plan_stages(smoke)] == ["data", "encoder_densenet161", "decoder_densenet161",
                                                          "evaluate_densenet161"]
    assert smoke.weights is None and smoke.blur_sigma == pytest.approx(5.0 * 64 / 480)
    assert paper.data_dir_of(smoke) == str(tmp_path / "smoke" / "data" / "salicon")


def test_rerun_with_other_settings_is_refused_but_experiments_may_be_added(tmp_path):
    first = paper.paper_config(None, str(tmp_path / "run"), smoke=True, experiments=["nasnet"])
    paper._record_plan(first, str(tmp_path / "run"))
    more = dataclasses.replace(first, experiments=("nasnet", "combined"))
    paper._record_plan(more, str(tmp_path / "run"))
    recorded = json.loads((tmp_path / "run" / paper.PLAN_FILE).read_text())
    assert recorded["experiments"] == ["nasnet", "combined"]
    other = dataclasses.replace(first, seed=3)
    with pytest.raises(ConfigMismatchError, match="seed: recorded 0, now 3"):
        paper.run_paper(other)  # refused before any stage runs
    assert not (tmp_path / "run" / "data").exists()


def test_unknown_experiments_and_missing_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="subset of"):
        paper.paper_config("d", str(tmp_path), experiments=["vgg"])
    with pytest.raises(ValueError, match="data_dir"):
        paper.paper_config(None, str(tmp_path))
