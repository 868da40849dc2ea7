"""Stage code versions come from the source a stage reaches through imports."""

import os
import shutil

import keras_uap
from keras_uap.pipelines.code_versions import code_version, reachable_modules

COMPARISON = "keras_uap.pipelines.comparison_stage"


def _copy_of_the_package(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(os.path.dirname(keras_uap.__file__), root / "keras_uap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(path):
    with open(path, "a") as f:
        f.write("\n# an edit\n")


def test_an_indirectly_reached_module_changes_the_version_and_an_unreached_one_does_not(tmp_path):
    root = _copy_of_the_package(tmp_path)
    reached = reachable_modules(COMPARISON, root=str(root))
    # comparison_stage -> baselines.compare -> keras_uap.method -> method.svd, which imports
    # analysis.spectrum inside a function: reached only indirectly.
    assert {"keras_uap.baselines.compare", "keras_uap.method.svd", "keras_uap.analysis.spectrum"} <= set(reached)
    assert "keras_uap.report.figures" not in reached
    assert all(path.startswith(str(root)) for path in reached.values())
    before = code_version("1", COMPARISON, root=str(root))
    assert code_version("1", COMPARISON, root=str(root)) == before
    _edit(root / "keras_uap" / "report" / "figures.py")
    assert code_version("1", COMPARISON, root=str(root)) == before
    _edit(root / "keras_uap" / "analysis" / "spectrum.py")
    after = code_version("1", COMPARISON, root=str(root))
    assert after != before and after.startswith("1-")
    assert code_version("2", COMPARISON, root=str(root)) != after


def test_a_name_taken_from_a_package_reaches_the_module_it_comes_from_only():
    # table2 imports P4ConvZ2, P4ConvP4 and GroupSpatialMaxPooling2D from keras_uap.layers.
    reached = reachable_modules("keras_uap.models.table2")
    assert {"keras_uap.layers.p4_conv_z2", "keras_uap.layers.p4_conv_p4", "keras_uap.layers.p4_ops",
            "keras_uap.layers.group_spatial_max_pooling_2d"} <= set(reached)
    assert "keras_uap.layers.rot_conv" not in reached
    assert "keras_uap.layers.rot_conv" in reachable_modules("keras_uap.models.roteqnet")
