"""Indonesian name normalisation (fhir_server/mpi/names.py)."""

import pytest

from fhir_server.mpi.names import parse_name


@pytest.mark.parametrize(
    ("written", "tokens"),
    [
        ("Hj. Siti Aminah binti Abdullah", ("siti", "aminah")),
        ("SITI AMINAH", ("siti", "aminah")),
        ("Siti Aminah, S.Pd.", ("siti", "aminah")),
        ("Budi Santoso, S.H., M.H.", ("budi", "santoso")),
        ("Dr. Ir. H. Achmad Sjahrir, M.Kes", ("ahmad", "syahrir")),
        ("Moch. Rizki Pratama", ("muhammad", "rizki", "pratama")),
        ("M.Rizki", ("muhammad", "rizki")),
        ("Mohammad Rizki", ("muhammad", "rizki")),
        ("Muh. Rizki", ("muhammad", "rizki")),
        ("Soeharto", ("suharto",)),
        ("Djoko Tjahjono", ("joko", "cahyono")),
        ("Soejono", ("suyono",)),
        ("Joko Widodo", ("joko", "widodo")),
        ("Tn. Bambang", ("bambang",)),
        ("Ny. Sri Rahayu", ("sri", "rahayu")),
        ("Dédé Putri", ("dede", "putri")),
    ],
)
def test_written_variants_reduce_to_the_same_tokens(written, tokens):
    assert parse_name(written).tokens == tokens


def test_bin_and_binti_split_off_the_fathers_name():
    parsed = parse_name("Ahmad Fauzi bin Hasan")
    assert parsed.tokens == ("ahmad", "fauzi")
    assert parsed.father == ("hasan",)
    assert parse_name("Siti b. Hasan").father == ("hasan",)


def test_a_titled_name_remembers_the_title_without_comparing_it():
    assert parse_name("Hj. Siti Aminah").titled
    assert not parse_name("Siti Aminah").titled


@pytest.mark.parametrize(
    "written", ["By. Ny. Siti Aminah", "Bayi Ny. Siti Aminah", "BY NY SITI AMINAH", "By.Ny. Siti Aminah", "Bayi Nyonya Siti Aminah"]
)
def test_a_newborn_placeholder_is_flagged_and_keeps_the_mothers_name(written):
    parsed = parse_name(written)
    assert parsed.newborn
    assert parsed.tokens == ("siti", "aminah")


def test_muhammad_is_left_out_of_the_distinctive_tokens_unless_it_is_the_whole_name():
    assert parse_name("Muhammad Rizki").distinctive == ("rizki",)
    assert parse_name("Muhammad").distinctive == ("muhammad",)


def test_the_key_ignores_token_order():
    assert parse_name("Aminah Siti").key == parse_name("Siti Aminah").key
