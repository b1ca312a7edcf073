"""Hypothesis strategies for synthetic native records (never real people)."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from mappings import systems as S
from terminology import indonesia

NAME = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ .'", min_size=1, max_size=30).map(lambda s: " ".join(s.split())).filter(bool)
TEXT = (
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,/-", min_size=1, max_size=40)
    .map(lambda s: " ".join(s.split()))
    .filter(bool)
)
DATES = st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2024, 12, 31))
# Existing Kemendagri districts (so the region check does not warn): Kab. Bandung, Jakarta Selatan, Kota Medan
VILLAGES = {"320415": 2001, "317402": 1001, "127101": 1001}
DISTRICTS = st.sampled_from(sorted(VILLAGES))


def labels(system: str):
    return st.sampled_from([c["display"] for c in indonesia.codesystem(system)["concept"]])


def digits(n: int):
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


@st.composite
def nik_for(draw, born: dt.date, female: bool) -> str:
    day = born.day + (40 if female else 0)
    serial = draw(st.integers(1, 9999))
    return f"{draw(DISTRICTS)}{day:02d}{born:%m%y}{serial:04d}"


@st.composite
def dukcapil_records(draw) -> dict:
    born = draw(DATES)
    female = draw(st.booleans())
    nik = draw(nik_for(born, female))
    rec = {"NIK": nik, "NAMA_LGKP": draw(NAME), "JENIS_KLMIN": "PEREMPUAN" if female else "LAKI-LAKI", "TGL_LHR": born.isoformat()}
    optional = {
        "NO_KK": digits(16).filter(lambda s: s[0] != "0"),
        "TMPT_LHR": NAME,
        "AGAMA": labels(S.CS_DUKCAPIL_RELIGION),
        "STATUS_KAWIN": labels(S.CS_DUKCAPIL_MARITAL),
        "JENIS_PKRJN": labels(S.CS_DUKCAPIL_OCCUPATION),
        "PDDK_AKH": labels(S.CS_DUKCAPIL_EDUCATION),
        "GOL_DARAH": labels(S.CS_DUKCAPIL_BLOOD),
        "STAT_HBKEL": labels(S.CS_DUKCAPIL_SHDK),
        "ALAMAT": TEXT,
        "NO_RT": st.integers(1, 999),
        "NO_RW": st.integers(1, 999),
        "NAMA_LGKP_IBU": NAME,
        "NAMA_LGKP_AYAH": NAME,
        "KODE_POS": digits(5),
        "DUSUN": NAME,
        "KEL_NAME": NAME,
        "KEC_NAME": NAME,
        "KAB_NAME": NAME,
        "PROP_NAME": NAME,
        "NO_AKTA_LHR": TEXT,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            rec[key] = draw(strategy)
    if draw(st.booleans()):
        rec.update({"NO_PROP": int(nik[0:2]), "NO_KAB": int(nik[2:4]), "NO_KEC": int(nik[4:6])})
        if draw(st.booleans()):
            rec["NO_KEL"] = VILLAGES[nik[:6]]
    rec["KEWARGANEGARAAN"] = draw(st.sampled_from(["WNI", "WNA"]))
    return rec


def kode(system: str, unknown: bool = False):
    """A BPJS {kode, keterangan} pair from a CodeSystem (plus, with ``unknown``, codes BPJS may add)."""
    known = st.sampled_from([{"kode": c["code"], "keterangan": c["display"]} for c in indonesia.codesystem(system)["concept"]])
    if not unknown:
        return known
    other = st.builds(lambda k, t: {"kode": k, "keterangan": t}, digits(2).map(lambda s: "9" + s), NAME)
    return st.one_of(known, other)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def bpjs_peserta(draw) -> dict:
    born = draw(DATES)
    female = draw(st.booleans())
    nik = draw(maybe(nik_for(born, female)))
    iso = DATES.map(dt.date.isoformat)
    return {
        "noKartu": draw(digits(13)),
        "nik": nik,
        "nama": draw(NAME),
        "pisa": draw(maybe(st.sampled_from("12345"))),
        "sex": "P" if female else "L",
        "tglLahir": born.isoformat(),
        "tglCetakKartu": draw(maybe(iso)),
        "tglTMT": draw(maybe(iso)),
        "tglTAT": draw(maybe(iso)),
        "cob": {
            "nmAsuransi": draw(maybe(NAME)),
            "noAsuransi": draw(maybe(digits(10))),
            "tglTMT": draw(maybe(iso)),
            "tglTAT": draw(maybe(iso)),
        },
        "hakKelas": draw(kode(S.CS_BPJS_CLASS)),
        "informasi": {"dinsos": draw(maybe(TEXT)), "noSKTM": draw(maybe(TEXT)), "prolanisPRB": draw(maybe(TEXT))},
        "jenisPeserta": draw(kode(S.CS_BPJS_PARTICIPANT_TYPE, unknown=True)),
        "mr": {"noMR": draw(maybe(TEXT)), "noTelepon": draw(maybe(digits(12)))},
        "provUmum": draw(
            st.one_of(
                st.just({"kdProvider": None, "nmProvider": None}),
                st.builds(lambda k, n: {"kdProvider": k, "nmProvider": n}, digits(4).map(lambda s: s + "U001"), NAME),
            )
        ),
        "statusPeserta": draw(kode(S.CS_BPJS_STATUS, unknown=True)),
    }


def _code_or_empty(system: str):
    return st.one_of(st.just(""), st.sampled_from([c["code"] for c in indonesia.codesystem(system)["concept"]]))


ICD10 = st.builds(
    lambda letter, n, sub: f"{letter}{n:02d}" + (f".{sub}" if sub is not None else ""),
    st.sampled_from("ABCDEIJKNRZ"),
    st.integers(0, 99),
    maybe(st.integers(0, 9)),
)
EMPTY_OR = lambda strategy: st.one_of(st.just(""), strategy)  # noqa: E731
FLAG = st.sampled_from(["0", "1"])


@st.composite
def sep_requests(draw) -> dict:
    iso = DATES.map(dt.date.isoformat)
    return {
        "request": {
            "t_sep": {
                "noKartu": draw(digits(13)),
                "tglSep": draw(iso),
                "ppkPelayanan": draw(digits(4)) + "R001",
                "jnsPelayanan": draw(st.sampled_from(["1", "2"])),
                "klsRawat": {
                    "klsRawatHak": draw(_code_or_empty(S.CS_BPJS_CLASS)),
                    "klsRawatNaik": draw(_code_or_empty(S.CS_BPJS_UPGRADE_CLASS)),
                    "pembiayaan": draw(_code_or_empty(S.CS_BPJS_UPGRADE_PAYER)),
                    "penanggungJawab": draw(EMPTY_OR(NAME)),
                },
                "noMR": draw(EMPTY_OR(TEXT)),
                "rujukan": {
                    "asalRujukan": draw(_code_or_empty(S.CS_BPJS_REFERRAL_SOURCE)),
                    "tglRujukan": draw(EMPTY_OR(iso)),
                    "noRujukan": draw(EMPTY_OR(digits(19))),
                    "ppkRujukan": draw(EMPTY_OR(digits(8))),
                },
                "catatan": draw(EMPTY_OR(TEXT)),
                "diagAwal": draw(ICD10),
                "poli": {"tujuan": draw(EMPTY_OR(st.sampled_from(["INT", "ANA", "MAT", "BED"]))), "eksekutif": draw(FLAG)},
                "cob": {"cob": draw(FLAG)},
                "katarak": {"katarak": draw(FLAG)},
                "jaminan": {
                    "lakaLantas": draw(_code_or_empty(S.CS_BPJS_ACCIDENT)),
                    "noLP": draw(EMPTY_OR(TEXT)),
                    "penjamin": {
                        "tglKejadian": draw(EMPTY_OR(iso)),
                        "keterangan": draw(EMPTY_OR(TEXT)),
                        "suplesi": {
                            "suplesi": draw(FLAG),
                            "noSepSuplesi": draw(EMPTY_OR(digits(19))),
                            "lokasiLaka": {
                                "kdPropinsi": draw(EMPTY_OR(digits(2))),
                                "kdKabupaten": draw(EMPTY_OR(digits(4))),
                                "kdKecamatan": draw(EMPTY_OR(digits(6))),
                            },
                        },
                    },
                },
                "tujuanKunj": draw(_code_or_empty(S.CS_BPJS_VISIT_PURPOSE)),
                "flagProcedure": draw(_code_or_empty(S.CS_BPJS_FLAG_PROCEDURE)),
                "kdPenunjang": draw(_code_or_empty(S.CS_BPJS_SUPPORTING)),
                "assesmentPel": draw(_code_or_empty(S.CS_BPJS_ASSESSMENT)),
                "skdp": {"noSurat": draw(EMPTY_OR(digits(6))), "kodeDPJP": draw(EMPTY_OR(digits(5)))},
                "dpjpLayan": draw(EMPTY_OR(digits(5))),
                "noTelp": draw(EMPTY_OR(digits(12))),
                "user": draw(EMPTY_OR(NAME)),
            }
        }
    }


DMY = DATES.map(lambda d: d.strftime("%d-%m-%Y"))
VITAL = st.one_of(st.just(0), st.integers(1, 250))


@st.composite
def pcare_pendaftaran(draw) -> dict:
    return {
        "kdProviderPeserta": draw(maybe(digits(4).map(lambda s: s + "U001"))),
        "tglDaftar": draw(DMY),
        "noKartu": draw(digits(13)),
        "kdPoli": draw(st.sampled_from(["001", "002", "003"])),
        "keluhan": draw(maybe(TEXT)),
        "kunjSakit": draw(maybe(st.booleans())),
        "sistole": draw(VITAL),
        "diastole": draw(VITAL),
        "beratBadan": draw(st.one_of(VITAL, st.integers(1, 1500).map(lambda n: n / 10).filter(lambda f: f % 1))),
        "tinggiBadan": draw(VITAL),
        "respRate": draw(VITAL),
        "lingkarPerut": draw(VITAL),
        "heartRate": draw(VITAL),
        "rujukBalik": draw(st.integers(0, 1)),
        "kdTkp": draw(st.sampled_from(["10", "20", "50"])),
    }


@st.composite
def pcare_kunjungan(draw) -> dict:
    rujuk = draw(
        maybe(
            st.fixed_dictionaries(
                {
                    "kdppk": maybe(digits(8)),
                    "tglEstRujuk": maybe(DMY),
                    "subSpesialis": maybe(st.fixed_dictionaries({"kdSubSpesialis1": digits(3), "kdSarana": maybe(digits(1))})),
                    "khusus": maybe(
                        st.fixed_dictionaries(
                            {"kdKhusus": st.sampled_from(["THA", "HEM"]), "kdSubSpesialis": maybe(digits(2)), "catatan": maybe(TEXT)}
                        )
                    ),
                }
            ).filter(lambda r: r["kdppk"] or r["tglEstRujuk"] or r["subSpesialis"] or r["khusus"])
        )
    )
    diag = [draw(maybe(ICD10)) for _ in range(3)]
    return {
        "noKunjungan": draw(maybe(digits(4).map(lambda s: s + "U0010324Y000001"))),
        "noKartu": draw(digits(13)),
        "tglDaftar": draw(DMY),
        "kdPoli": draw(st.sampled_from(["001", "002"])),
        "keluhan": draw(maybe(TEXT)),
        "kdSadar": draw(maybe(st.sampled_from(["01", "02", "03"]))),
        "sistole": draw(VITAL),
        "diastole": draw(VITAL),
        "beratBadan": draw(VITAL),
        "tinggiBadan": draw(VITAL),
        "respRate": draw(VITAL),
        "heartRate": draw(VITAL),
        "lingkarPerut": draw(VITAL),
        "kdStatusPulang": draw(maybe(st.sampled_from(["0", "1", "3", "4"]))),
        "tglPulang": draw(maybe(DMY)),
        "kdDokter": draw(maybe(digits(6))),
        "kdDiag1": diag[0],
        "kdDiag2": diag[1],
        "kdDiag3": diag[2],
        "kdPoliRujukInternal": draw(maybe(digits(3))),
        "rujukLanjut": rujuk,
        "kdTacc": draw(maybe(st.integers(-1, 4))),
        "alasanTacc": draw(maybe(TEXT)),
        "anamnesa": draw(maybe(TEXT)),
        "alergiMakan": draw(maybe(digits(2))),
        "alergiUdara": draw(maybe(digits(2))),
        "alergiObat": draw(maybe(digits(2))),
        "kdPrognosa": draw(maybe(digits(2))),
        "terapiObat": draw(maybe(TEXT)),
        "terapiNonObat": draw(maybe(TEXT)),
        "bmhp": draw(maybe(TEXT)),
        "suhu": draw(st.one_of(st.just(0), st.integers(340, 420).map(lambda n: n / 10))),
    }
