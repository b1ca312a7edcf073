"""LZ-String's URI-safe encoding (``compressToEncodedURIComponent`` and its inverse), in pure Python.

BPJS compresses every VClaim/P-Care response with the JavaScript lz-string library before encrypting it.
The maintained PyPI ports are either unavailable here or old, so this is a small, independent
implementation of the published algorithm (lz-string is MIT), held to the JavaScript output by the fixed
vectors in the tests. JavaScript works on UTF-16 code units, so strings are converted to code units
first (characters outside the BMP become surrogate pairs) and back at the end.
"""

from __future__ import annotations

from collections.abc import Callable

_URI_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-$"
_URI_VALUE = {ch: i for i, ch in enumerate(_URI_SAFE)}


def _to_units(text: str) -> list[str]:
    raw = text.encode("utf-16-le", "surrogatepass")
    return [chr(int.from_bytes(raw[i : i + 2], "little")) for i in range(0, len(raw), 2)]


def _from_units(units: str) -> str:
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


class _BitWriter:
    def __init__(self, bits_per_char: int, char_of: Callable[[int], str]) -> None:
        self.bits_per_char = bits_per_char
        self.char_of = char_of
        self.out: list[str] = []
        self.value = 0
        self.position = 0

    def write(self, value: int, count: int) -> None:
        """Write ``count`` bits of ``value``, least significant first (lz-string's order)."""
        for _ in range(count):
            self.value = (self.value << 1) | (value & 1)
            if self.position == self.bits_per_char - 1:
                self.position = 0
                self.out.append(self.char_of(self.value))
                self.value = 0
            else:
                self.position += 1
            value >>= 1

    def finish(self) -> str:
        while True:
            self.value <<= 1
            if self.position == self.bits_per_char - 1:
                self.out.append(self.char_of(self.value))
                break
            self.position += 1
        return "".join(self.out)


def _compress(units: list[str], bits_per_char: int, char_of: Callable[[int], str]) -> str:
    dictionary: dict[str, int] = {}
    to_create: set[str] = set()
    enlarge_in = 2
    dict_size = 3
    num_bits = 2
    writer = _BitWriter(bits_per_char, char_of)
    w = ""

    def emit(word: str) -> None:
        nonlocal enlarge_in, num_bits
        if word in to_create:
            code = ord(word[0])
            if code < 256:
                writer.write(0, num_bits)
                writer.write(code, 8)
            else:
                writer.write(1, num_bits)
                writer.write(code, 16)
            enlarge_in -= 1
            if enlarge_in == 0:
                enlarge_in = 1 << num_bits
                num_bits += 1
            to_create.discard(word)
        else:
            writer.write(dictionary[word], num_bits)
        enlarge_in -= 1
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1

    for c in units:
        if c not in dictionary:
            dictionary[c] = dict_size
            dict_size += 1
            to_create.add(c)
        wc = w + c
        if wc in dictionary:
            w = wc
            continue
        emit(w)
        dictionary[wc] = dict_size
        dict_size += 1
        w = c
    if w:
        emit(w)
    writer.write(2, num_bits)
    return writer.finish()


def _decompress(length: int, reset_value: int, next_value: Callable[[int], int]) -> str | None:
    dictionary: list[str] = ["", "", ""]
    enlarge_in = 4
    num_bits = 3
    data_val = next_value(0)
    data_position = reset_value
    data_index = 1

    def read(count: int) -> int:
        nonlocal data_val, data_position, data_index
        bits = 0
        for power in range(count):
            bit = data_val & data_position
            data_position >>= 1
            if data_position == 0:
                data_position = reset_value
                data_val = next_value(data_index)
                data_index += 1
            if bit:
                bits |= 1 << power
        return bits

    first = read(2)
    if first == 2:
        return ""
    if first not in (0, 1):
        return None
    c = chr(read(8 if first == 0 else 16))
    dictionary.append(c)
    w = c
    result = [c]
    while True:
        if data_index > length:
            return ""
        code = read(num_bits)
        if code in (0, 1):
            dictionary.append(chr(read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            return "".join(result)
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            return None
        result.append(entry)
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1


def compress_to_encoded_uri_component(text: str) -> str:
    """Same output as ``LZString.compressToEncodedURIComponent(text)``."""
    return _compress(_to_units(text), 6, _URI_SAFE.__getitem__)


def decompress_from_encoded_uri_component(data: str) -> str:
    """Same result as ``LZString.decompressFromEncodedURIComponent(data)``; ValueError when it is not LZ-String."""
    if data == "":
        raise ValueError("empty LZ-String input")
    data = data.replace(" ", "+")
    if any(ch not in _URI_VALUE for ch in data):
        raise ValueError("LZ-String input has characters outside the URI-safe alphabet")

    def next_value(index: int) -> int:
        return _URI_VALUE[data[index]] if index < len(data) else 0

    units = _decompress(len(data), 32, next_value)
    if units is None:
        raise ValueError("corrupt LZ-String input")
    return _from_units(units)
