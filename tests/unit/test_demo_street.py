"""The demo's street and its day: the reports' sizes, determinism, scaling, and a plan whose every
gate passage expects the decision CONTRACT.md gives it."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from services.demo import plan as planning
from services.demo.street import PLAN, STREET, build, scaled, seed_tag
from shared.idcard import check_digit

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@pytest.fixture(scope="module")
def full():
    return build(7, 1.0)


@pytest.fixture(scope="module")
def full_day(full):
    return planning.plan_day(full)


def compound(street, committee: str, key: str):
    return next(c for c in street.committees[committee] if c.plan.key == key)


def test_the_street_has_the_sizes_of_the_reports(full):
    nangong = full.committees["nangong"]
    assert len(nangong) == 10
    assert sum(len(c.households) for c in nangong) == 5400
    assert len(compound(full, "nangong", "c01").households) == 2716
    xinjing = compound(full, "xinjing", "c01")
    assert (len(xinjing.households), len(xinjing.residents)) == (835, 1502)
    three_no = compound(full, "xinjing", "c02")
    assert three_no.plan.three_no and len(three_no.households) == 24
    tianshan = full.committees["tianshan"]
    assert len(tianshan) == 3 and 2000 <= sum(len(c.households) for c in tianshan) <= 2200
    assert (len(compound(full, "tianshan", "c01").gates), len(compound(full, "tianshan", "c01").open_gates)) == (7, 2)


def test_the_day_has_the_reports_figures(full, full_day):
    nangong_c01 = compound(full, "nangong", "c01")
    home = {a.resident.id for a in full_day.arrivals if a.category == "home" and a.compound is nangong_c01}
    home |= {r.id for c, _, r in full_day.close_contacts if c is nangong_c01}
    assert len(home) == 169
    xinjing = compound(full, "xinjing", "c01")
    recent = [a for a in full_day.arrivals if a.compound is xinjing and a.category != "old"]
    assert len(recent) == 52
    assert len(full_day.sealed) == 1 and full_day.sealed[0][0] is nangong_c01


def test_the_same_seed_builds_the_same_street_and_day():
    a, b = build(3, 0.05), build(3, 0.05)
    assert [(r.id, r.name, r.id_number, r.birth_year) for r in a.residents] == \
           [(r.id, r.name, r.id_number, r.birth_year) for r in b.residents]
    pa, pb = planning.plan_day(a), planning.plan_day(b)
    assert [(p.at, p.gate, p.pass_of, p.resident, p.expect) for p in pa.passages] == \
           [(p.at, p.gate, p.pass_of, p.resident, p.expect) for p in pb.passages]
    assert build(4, 0.05).residents[0].id_number != a.residents[0].id_number
    assert seed_tag(3) != seed_tag(4) and SLUG.match(seed_tag(3))


def test_scale_shrinks_every_count_but_keeps_one_of_each():
    small = build(7, 0.02)
    assert [c.plan.key for c in small.compounds] == [p.key for cm in PLAN for p in cm.compounds]
    for c in small.compounds:
        assert len(c.households) == scaled(c.plan.households, 0.02) >= 1
    day = planning.plan_day(small)
    kinds = Counter(a.category for a in day.arrivals)
    assert {"home", "centralized", "false_a", "b", "pending", "old"} <= set(kinds)
    assert day.close_contacts and day.sealed and day.lost_pass and day.transfer
    assert scaled(0, 0.02) == 0 and scaled(169, 0.02) == 3 and scaled(52, 0.001) == 1
    with pytest.raises(ValueError):
        build(7, 0)


def test_ids_are_slugs_and_id_numbers_are_valid_and_unique(full):
    numbers = [r.id_number for r in full.residents]
    assert len(set(numbers)) == len(numbers)
    for r in full.residents[:2000]:
        assert check_digit(r.id_number[:17]) == r.id_number[17]
        assert SLUG.match(r.id) and SLUG.match(r.household)
        assert 1890 <= r.birth_year <= 2020
    for c in full.compounds:
        assert SLUG.match(c.id) and c.community.startswith(STREET + ".")


def test_check_digit_matches_a_known_number():
    assert check_digit("11010519491231002") == "X"


def test_vulnerable_residents_exist_with_one_oxygen_machine_per_committee(full):
    found = Counter(v for r in full.residents for v in r.vulnerabilities)
    assert found["elderly_alone"] > 100 and found["limited_mobility"] > 0 and found["chronic_illness"] > 0
    assert found["medical_device"] == len(PLAN)
    for r in full.residents:
        if "elderly_alone" in r.vulnerabilities:
            assert r.age >= 70 and len(next(h for h in full.households if h.id == r.household).residents) == 1


def test_every_passage_expects_what_contract_decides(full, full_day):
    confined = full_day.confined_households
    sealed = {h.id for _, _, hs in full_day.sealed for h in hs}
    for p in full_day.passages:
        assert planning.at("13:00") <= p.at <= planning.at("21:30")
        if p.expect is None:  # an ordinary trip or an admitted visitor: nobody confined goes out
            assert p.pass_of not in confined and p.temperature_c < 37.3 and p.gate in p.compound.open_gates
            if p.pass_of is None and p.visitor is None:
                assert p.compound.plan.level == "open"  # no pass needed where the compound is open
        elif p.expect == "fever":  # residents coming home, or a visitor
            assert p.temperature_c >= 37.3 and p.direction == "in" and p.pass_of not in confined
        elif p.expect == "building_sealed":
            assert p.pass_of in sealed and p.direction == "out"
        elif p.expect == "under_quarantine":
            assert p.pass_of in confined - sealed and p.direction == "out"
        elif p.expect == "gate_closed":
            assert p.gate not in p.compound.open_gates
        elif p.expect == "visitors_not_admitted":
            assert p.visitor and p.compound.plan.level == "closed"
        else:
            assert p.expect == "no_valid_pass" and (p.old_pass or (p.pass_of is None and p.resident))
    reasons = Counter(p.expect for p in full_day.passages)
    assert set(reasons) == {None, "fever", "building_sealed", "under_quarantine", "gate_closed",
                            "visitors_not_admitted", "no_valid_pass"}
    households = sum(len(c.households) for c in full.compounds)
    assert 1.2 * households <= reasons[None] <= 1.7 * households  # ~0.8 round trips per household


def test_one_elderly_door_goes_unanswered_and_stock_covers_the_day(full, full_day):
    [unanswered] = [r for r in full_day.requests if r.no_answer]
    assert any("elderly_alone" in r.vulnerabilities for r in unanswered.household.residents)
    assert unanswered.compound.community == full.compounds[0].community
    confined = full_day.confined_households
    for community, items in full_day.stock.items():
        ids = {h.id for h in full.households if h.compound.community == community}
        food = sum(1 for r in full_day.requests if r.kind == "food" and r.household.id in ids)
        assert items["vegetable-pack"] >= len(confined & ids) + food
        assert items["masks"] >= sum(m.qty for m in full_day.masks if m.household.id in ids)
    assert all(m.qty <= 10 for m in full_day.masks)  # the default weekly limit of a household


def test_checkins_skip_a_few_and_send_one_to_hospital(full_day):
    home = {a.resident.id for a in full_day.arrivals if a.category == "home"} | \
           {r.id for _, _, r in full_day.close_contacts}
    assert full_day.transfer in home and full_day.transfer not in full_day.checkin_skipped
    assert full_day.checkin_skipped <= home and 1 <= len(full_day.checkin_skipped) <= 6


def test_spread_stays_inside_its_window():
    times = planning.spread(7, planning.at("10:00"), planning.at("11:00"))
    assert len(times) == 7 and times[0] == planning.at("10:00") and times[-1] < planning.at("11:00")
    assert times == sorted(times) and all(t.microsecond == 0 for t in times)
