import json

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.extract.identities import connect, find_identities, read_labels_csv
from dfpipe.extract.run import count_ungrouped_fakes, discover


def test_ffpp_fake_involves_target_and_source(tmp_path):
    assert find_identities(tmp_path / "519_515.mp4", "fake") == (["515", "519"], "ffpp_name")
    assert find_identities(tmp_path / "519.mp4", "real") == (["519"], "self")


def test_celebdf_names_give_both_identities(tmp_path):
    assert find_identities(tmp_path / "id0_id16_0003.mp4", "fake") == (["id0", "id16"],
                                                                       "celebdf_name")
    assert find_identities(tmp_path / "id16_0007.mp4", "real") == (["id16"], "celebdf_name")


def test_union_find_joins_every_video_of_connected_identities():
    groups = connect({"519": ["519"], "515": ["515"], "519_515": ["519", "515"],
                      "600": ["600"], "700_600": ["700", "600"], "800": ["800"]})
    assert groups["519"] == groups["515"] == groups["519_515"] == "515"
    assert groups["600"] == groups["700_600"] == "600"
    assert groups["800"] == "800"


def test_dfdc_metadata_original(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "FAKE", "original": "bbb.mp4", "split": "train"},
        "bbb.mp4": {"label": "REAL", "split": "train"},
    }))
    assert find_identities(tmp_path / "aaa.mp4", "fake") == (["aaa", "bbb"], "dfdc_metadata")
    assert find_identities(tmp_path / "bbb.mp4", "real") == (["bbb"], "self")


def test_dfdc_metadata_found_beside_the_symlink_target(tmp_path):
    part = tmp_path / "dfdc_part_0"
    part.mkdir()
    (part / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "FAKE", "original": "bbb.mp4"}}))
    (part / "aaa.mp4").write_bytes(b"x")
    link = tmp_path / "dataset" / "fake" / "aaa.mp4"
    link.parent.mkdir(parents=True)
    link.symlink_to(part / "aaa.mp4")
    assert find_identities(link, "fake") == (["aaa", "bbb"], "dfdc_metadata")


def test_labels_csv_group_may_list_several_ids(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,group\nfake/x.mp4,fake,519|515.mp4\nfake/y.mp4,fake,y0\n")
    labels = read_labels_csv(csv_path, tmp_path)
    assert labels["fake/x.mp4"].ids == ["515", "519"]  # sorted, as every identity list is
    assert find_identities(tmp_path / "fake/x.mp4", "fake", labels, "fake/x.mp4") == (
        ["515", "519"], "labels_csv")


def test_labels_csv_wins_and_accepts_source_video(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,source_video\nfake/x.mp4,fake,y.mp4\n")
    labels = read_labels_csv(csv_path, tmp_path)
    assert labels["fake/x.mp4"].ids == ["y"]
    assert find_identities(tmp_path / "fake/x.mp4", "fake", labels, "fake/x.mp4") == (
        ["y"], "labels_csv")


def test_labels_csv_rejects_unknown_label(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\nfake/x.mp4,maybe\n")
    with pytest.raises(PipelineError, match="not real or fake"):
        read_labels_csv(csv_path, tmp_path)


def test_discover_joins_groups_and_counts_ungrouped_fakes(tmp_path):
    for rel in ("real/515.mp4", "real/519.mp4", "fake/DF/519_515.mp4", "fake/other/clip.mp4",
                "real/777.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    jobs = {job.relpath: job for job in discover(tmp_path)}
    assert jobs["real/515.mp4"].group == jobs["real/519.mp4"].group == "515"
    assert jobs["fake/DF/519_515.mp4"].group == "515"
    assert jobs["fake/DF/519_515.mp4"].identities == ("515", "519")
    assert jobs["real/777.mp4"].group == "777"
    assert jobs["fake/other/clip.mp4"].group_rule == "self"
    assert count_ungrouped_fakes(list(jobs.values())) == 1


def test_dfd_names_give_the_actors(tmp_path):
    assert find_identities(tmp_path / "01_02__talking_angry__YVGY8LOK.mp4", "fake") == (
        ["actor01", "actor02"], "dfd_name")
    assert find_identities(tmp_path / "01__talking_angry.mp4", "real") == (["actor01"],
                                                                           "dfd_name")
