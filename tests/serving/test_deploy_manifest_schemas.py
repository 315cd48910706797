"""serving/deploy/kubernetes/*.yaml and the ConfigMap `tfinetune deploy-config` writes are valid
Kubernetes objects: each is checked, strictly (no unknown fields), against Kubernetes' own
OpenAPI schemas as bundled by `kubernetes-validate`, for the oldest and the newest Kubernetes
versions it carries (no cluster needed)."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate  # the `test` extra
import pytest
import yaml
from kubernetes_validate import utils as validate_utils

from serving.deployment_files import CONFIGMAP
from serving.deployment_files import DeploymentFiles

KUBERNETES = Path(__file__).resolve().parents[2] / "serving" / "deploy" / "kubernetes"
VERSIONS = sorted({validate_utils.major_minor(version) for version in
                   (validate_utils.all_versions()[0], validate_utils.latest_version())})


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


MANIFESTS = [(path.name, index, document) for path in sorted(KUBERNETES.glob("*.yaml"))
             for index, document in enumerate(documents(path))]


def test_the_manifests_are_the_four_expected_kinds():
    kinds = sorted(document["kind"] for _, _, document in MANIFESTS)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service", "Service"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name,index,document", MANIFESTS,
                         ids=[f"{name}#{index}" for name, index, _ in MANIFESTS])
def test_each_manifest_is_a_valid_kubernetes_object(name, index, document, version):
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_generated_configmap_is_a_valid_kubernetes_object(tmp_path, version):
    base = tmp_path / "sentiment"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    written = DeploymentFiles(models=(("sentiment", str(base)),),
                              container_model_root="/models").write(tmp_path / "out")
    [configmap] = documents(written[CONFIGMAP])
    kubernetes_validate.validate(configmap, version, strict=True)


def test_the_validator_would_catch_a_misspelt_field():
    """The check above is strict: a typo in the Deployment (`replica` for `replicas`) fails."""
    [deployment] = [document for _, _, document in MANIFESTS if document["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = broken["spec"].pop("replicas", 2)
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
