"""runner.language.plugin_names: which filters and tests a template may name, and the cache of Ansible's."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.language import plugin_names
from runner.language.plugin_names import AnsiblePlugins, Known
from runner.language.templates import PluginUse, plugin_uses

KNOWN = AnsiblePlugins(
    {
        "filter": Known(
            frozenset({"ansible.builtin.to_json", "ansible.builtin.bool", "community.general.json_query"}),
            {"ansible.builtin.json_query": "community.general.json_query", "community.general.old": "gone.away.x"},
        ),
        "test": Known(frozenset({"ansible.builtin.truthy"}), {}),
    },
    frozenset({"ansible.builtin", "community.general", "runbook.ops"}),
)


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_names, "ansible_plugins", lambda: KNOWN)


def test_templates_name_their_filters_and_tests() -> None:
    uses = plugin_uses("{{ xs | map('lower') | select('truthy') | selectattr('a', 'defined') | ns.c.f(1) }}")
    assert set(uses) == {
        PluginUse("filter", "ns.c.f"),
        PluginUse("filter", "selectattr"),
        PluginUse("test", "defined"),
        PluginUse("filter", "select"),
        PluginUse("test", "truthy"),
        PluginUse("filter", "map"),
        PluginUse("filter", "lower"),
    }
    assert plugin_uses("x is defined and x | bool", expression=True) == [
        PluginUse("test", "defined"),
        PluginUse("filter", "bool"),
    ]
    assert plugin_uses("{{ unclosed") == []


@pytest.mark.usefixtures("known")
def test_names_ansible_resolves() -> None:
    for name in ("default", "to_json", "ansible.builtin.to_json", "ansible.legacy.bool", "json_query"):
        assert plugin_names.unknown_in_ansible("filter", name) is None, name
    assert plugin_names.unknown_in_ansible("filter", "community.general.json_query") is None
    assert plugin_names.unknown_in_ansible("test", "truthy") is None
    assert plugin_names.unknown_in_ansible("filter", "to_jsn") == "; did you mean 'to_json'?"
    assert plugin_names.unknown_in_ansible("filter", "community.general.old") == ""  # redirected to nothing
    assert plugin_names.unknown_in_ansible("filter", "acme.x.y") == " (no collection acme.x is installed)"
    assert plugin_names.unknown_in_ansible("filter", "runbook.ops.y") == ""  # installed, without that filter


def test_nothing_is_reported_when_ansible_cannot_be_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_names, "ansible_plugins", lambda: None)
    assert plugin_names.unknown_in_ansible("filter", "no_such_filter") is None
    assert plugin_names.unknown_in_jinja("filter", "to_json") == "; did you mean 'tojson'?"


def test_the_index_is_cached_until_plugins_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collections = tmp_path / "ansible_collections" / "acme" / "tools" / "plugins" / "filter"
    collections.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(tmp_path))
    calls: list[list[Path]] = []

    def index(roots: list[Path]) -> dict[str, object]:
        calls.append(roots)
        kinds = {kind: {"names": [f"acme.tools.{len(calls)}"], "redirects": {}} for kind in ("filter", "test")}
        return {"collections": ["acme.tools"], **kinds}

    monkeypatch.setattr(plugin_names, "_run_index", index)
    plugin_names.ansible_plugins.cache_clear()
    try:
        first = plugin_names.ansible_plugins()
        plugin_names.ansible_plugins.cache_clear()
        assert plugin_names.ansible_plugins() == first and len(calls) == 1  # from the cache file
        (collections / "frob.py").write_text("")
        plugin_names.ansible_plugins.cache_clear()
        assert plugin_names.ansible_plugins() == AnsiblePlugins(
            {kind: Known(frozenset({"acme.tools.2"}), {}) for kind in ("filter", "test")}, frozenset({"acme.tools"})
        )
        assert tmp_path in calls[0]
    finally:
        plugin_names.ansible_plugins.cache_clear()
