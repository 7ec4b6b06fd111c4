from ansible.module_utils.popdb_mask import mask_id, mask_name, mask_text


def test_mask_id_keeps_3_and_4():
    assert mask_id("42010219900307123X") == "420***********123X"
    assert mask_id(None) is None


def test_mask_name():
    assert mask_name("张三丰") == "张**"
    assert mask_name("李") == "李*"


def test_mask_text_masks_every_id_but_not_other_numbers():
    line = "dup id 420102199003071234 and 420502198512120019 at 2026-11-29 rows=1234567"
    out = mask_text(line)
    assert "420102199003071234" not in out and "420502198512120019" not in out
    assert "420***********1234" in out and "rows=1234567" in out
