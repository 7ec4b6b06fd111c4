"""The fake devices behave like the CLIs the module relies on (state, replace, undo, save, filters)."""

from __future__ import annotations

import pytest
from netmiko import ConnectHandler

from fakes.netdev import FakeDevice, FakeNetwork, pipe_filter


def test_model_replace_undo_and_secret_display():
    d = FakeDevice("r1", "huawei_vrp", config="ike peer a\n remote-address 1.1.1.1\n")
    view, err = d.apply(None, "ike peer a")
    assert err is None
    d.apply(view, "remote-address 2.2.2.2")  # single-valued: replaces
    d.apply(view, "pre-shared-key cipher S3cret")
    assert d.block("ike peer a")[1] == ["remote-address 2.2.2.2", "pre-shared-key cipher S3cret"]
    assert "S3cret" not in d.render() and "pre-shared-key cipher %^%#" in d.render()
    d.apply(view, "undo remote-address")
    assert d.block("ike peer a")[1] == ["pre-shared-key cipher S3cret"]
    d.apply(None, "undo ike peer a")
    assert d.block("ike peer a") is None


def test_pipe_filters():
    text = "a\n x\nb\n y\nc"
    assert pipe_filter(text, " include ^b") == "b"
    assert pipe_filter(text, " begin ^b") == "b\n y\nc"
    assert pipe_filter(text, " section ^b") == "b\n y"
    assert pipe_filter(text, " exclude x") == "a\nb\n y\nc"


@pytest.mark.parametrize(
    "dialect,enter,line,saved_cmd",
    [
        ("huawei_vrp", "system-view", "ike peer p1", ("save", True)),
        ("hp_comware", "system-view", "ike profile p1", ("save force", False)),
        ("cisco_ios", "configure terminal", "crypto keyring kr-p1", ("write memory", False)),
    ],
)
def test_netmiko_session_config_save_and_reject(dialect, enter, line, saved_cmd):
    dev = FakeDevice("gw1", dialect, reject=[r"^bogus"])
    with FakeNetwork([dev]):
        c = ConnectHandler(
            device_type=dialect, host="127.0.0.1", port=dev.port, username="admin", password="admin"
        )
        prompt = r"\(config\)#" if dialect == "cisco_ios" else r"\]"
        c.send_command(enter, expect_string=prompt)  # netmiko's config_mode() waits 2 s twice on VRP
        out = c.send_config_set(
            [line, "description hello", "bogus command"],
            cmd_verify=True,
            enter_config_mode=False,
            exit_config_mode=False,
        )
        c.send_command("end" if dialect == "cisco_ios" else "return", expect_string=r"[>#]")
        assert "Unrecognized" in out or "Invalid input" in out
        assert dev.block(line)[1] == ["description hello"]
        assert dev.saved == [] and dev.saves == 0
        show = "show running-config" if dialect == "cisco_ios" else "display current-configuration"
        assert "description hello" in c.send_command(show)
        cmd, confirm = saved_cmd
        c.save_config(cmd=cmd, confirm=confirm, confirm_response="y") if confirm else c.save_config(cmd=cmd)
        assert dev.saves == 1 and dev.saved == dev.running
        c.disconnect()
    assert ("exec", show) in dev.log


def test_wrong_password_refused():
    from netmiko.exceptions import NetmikoAuthenticationException

    dev = FakeDevice("gw1", "cisco_ios")
    with FakeNetwork([dev]), pytest.raises(NetmikoAuthenticationException):
        ConnectHandler(
            device_type="cisco_ios", host="127.0.0.1", port=dev.port, username="admin", password="no"
        )
