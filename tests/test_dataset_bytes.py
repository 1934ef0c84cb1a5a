"""Datasets from the same seed are the same bytes as before tasks, modalities and encoders became
plug-ins: the digest of ``tests/dataset_digest.py`` (every episode array and attribute of a small
collection with the camera, flow and every default policy) equals the one commit a0db715 gave."""

from dataset_digest import collect

# python tests/dataset_digest.py /tmp/x, run at the root of a checkout of a0db715 (2026-12-03)
DIGEST_A0DB715 = "66e48db48d354bec0f64e3115917ebeb1711cca640ee0d3781c9e5a48581e0f6"


def test_a_seeded_collection_is_byte_identical_to_the_pre_plugin_tree(tmp_path):
    assert collect(tmp_path / "data") == DIGEST_A0DB715
