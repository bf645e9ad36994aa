"""The family table: every preset has a family, every entry resolves, and questions replace name comparisons."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch113


def test_every_preset_has_a_family_whose_entries_resolve():
    from anydepth.families import FAMILIES, TASKS, family_of, resolve
    from anydepth.presets import PRESETS

    for preset in PRESETS.values():
        family = family_of(preset)
        assert family.task in TASKS
        assert family is family_of(preset.name)
    for family in FAMILIES.values():
        for ref in (family.pipeline, family.loader, family.static_export, family.exported_runtime):
            if ref is not None:
                assert callable(resolve(ref)), ref
        assert (family.build is None) == (family.loader is not None)


def test_family_questions_replace_name_comparisons():
    from anydepth.families import build_network, family_of
    from anydepth.presets import get_preset

    assert family_of("da3-small").takes_views(get_preset("da3-small"))
    assert not family_of("da3mono-large").takes_views(get_preset("da3mono-large"))
    assert not family_of("dav2-small").takes_views(get_preset("dav2-small"))
    assert not family_of("depthcrafter").exportable and family_of("vda-small").exportable
    with pytest.raises(ValueError, match="several networks"):
        build_network("depthcrafter")
