def test_tiny_run_dir_has_run_layout(tiny_run_dir):
    for name in ["config.json", "tf_model.h5", "vocab.txt", "labels.json", "fit_config.yaml"]:
        assert (tiny_run_dir / name).is_file(), name
