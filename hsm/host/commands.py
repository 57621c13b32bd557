"""The host commands: one function per payShield command code, field layouts as in the payShield host
command reference (variant LMK), working on keys through a `KeyVault`.

Each handler takes the vault and a `FieldReader` positioned after the command code and returns the response
fields that follow error code 00, or raises `HostError` / `CryptoError` with the payShield error code.
Clear keys and PINs exist only in local variables here; nothing is logged from this module.

Conventions shared by the PIN commands: the 12-digit account number is the 12 rightmost PAN digits
excluding the check digit; the primitives in `hsm.crypto` take a PAN, so we hand them the account number
followed by a dummy check digit, which makes them see exactly these 12 digits. PIN block format codes are
payShield's: 01 = ISO 9564-1 format 0, 05 = ISO format 1, 34 = ISO format 2, 47 = ISO format 3 (format 4,
code 48, needs AES keys, which a variant LMK cannot hold).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from hsm.crypto import cvv, dukpt, mac, pinblock, pinverify
from hsm.crypto.des import (
    has_odd_parity,
    kcv_tdes,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    with_odd_parity,
)
from hsm.host.fields import FieldReader, HostError
from hsm.keys import (
    BDK,
    CVK,
    PVK,
    TAK,
    TPK,
    ZAK,
    ZEK,
    ZMK,
    ZPK,
    KeyRejected,
    KeyType,
    KeyVault,
    decrypt_under_key,
    encrypt_under_key,
    format_key_field,
    key_type,
    random_key,
    split_key_field,
)
from hsm.pin_lmk import decrypt_pin_from_lmk, encrypt_pin_under_lmk

__all__ = ["COMMANDS", "FIRMWARE_VERSION", "Handler"]

Handler = Callable[[KeyVault, FieldReader], str]

FIRMWARE_VERSION = "0007-E000"  # 9 characters, as NC reports it; ours, not a Thales release
PIN_BLOCK_FORMATS: dict[str, int] = {"01": 0, "05": 1, "34": 2, "47": 3}
_MAC_KEY_TYPES = {"003": TAK, "008": ZAK}
# BU's two-character key type code -> the key type (variant 0 of that pair code).
_BU_KEY_TYPE_CODES = {"00", "01", "02", "03", "08", "09", "0A", "0B"}


# --- shared helpers -----------------------------------------------------------------------------------


def _unwrap(vault: KeyVault, field: str, kt: KeyType, parity_code: str) -> bytes:
    """Clear key behind an LMK-encrypted field; `parity_code` (10 or 11) when its parity is wrong."""
    try:
        key = vault.unwrap(field, kt)
    except KeyRejected as exc:
        raise HostError(exc.code, exc.message) from None
    if not key.parity_ok:
        raise HostError(parity_code, f"{kt.name} parity error")
    return key.clear


def _double(key: bytes, what: str) -> bytes:
    if len(key) != 16:
        raise HostError("27", f"{what} must be double length")
    return key


def _pin_format(code: str) -> int:
    fmt = PIN_BLOCK_FORMATS.get(code)
    if fmt is None:
        raise HostError("23", "invalid or unsupported PIN block format code")
    return fmt


def _pan(account: str) -> str:
    return account + "0"


def _validation_data(template: str, account: str) -> str:
    # payShield PIN validation data: 12 characters, 'N' marks where the last 5 account digits go.
    return template.replace("N", account[-5:], 1)


def _offset(field: str) -> str:
    offset = field.rstrip("F")
    if not offset.isdigit():
        raise HostError("15", "offset must be decimal digits padded with F")
    return offset


def _check_length(value: int) -> int:
    if not 4 <= value <= 12:
        raise HostError("15", "check length must be 04 to 12")
    return value


def _pin_block(reader: FieldReader) -> bytes:
    return bytes.fromhex(reader.hex(16, "PIN block"))


def _kcv(key: bytes, kcv_type: str) -> str:
    return kcv_tdes(key, 6 if kcv_type == "1" else 16)


# --- diagnostics ----------------------------------------------------------------------------------------


def cmd_nc(vault: KeyVault, r: FieldReader) -> str:
    """NC: diagnostics. Response: LMK check value (16H), firmware number (9A)."""
    return vault.lmk.check_value() + FIRMWARE_VERSION


def cmd_b2(vault: KeyVault, r: FieldReader) -> str:
    """B2: echo. Request: length (4H), data. Response: the data."""
    length = int(r.hex(4, "message length"), 16)
    data = r.take(length, "message data")
    return data


# --- keys -----------------------------------------------------------------------------------------------


def _scheme_letter(letter: str, what: str) -> str:
    if letter not in ("Z", "U", "T", "X", "Y"):
        raise HostError("26", f"invalid key scheme for {what}")
    return letter


def _zmk_or_tmk(vault: KeyVault, field: str, flag: str) -> bytes:
    if flag not in ("0", "1"):
        raise HostError("15", "ZMK/TMK flag must be 0 or 1")
    kt = ZMK if flag == "0" else TPK  # 1 = TMK (LMK 14-15)
    return _unwrap(vault, field, kt, "10")


def _encrypt_under_zmk(zmk: bytes, clear: bytes, scheme: str) -> str:
    try:
        return format_key_field(scheme, encrypt_under_key(zmk, clear, scheme))
    except KeyRejected as exc:
        raise HostError(exc.code, exc.message) from None


def _decrypt_under_zmk(zmk: bytes, field: str) -> bytes:
    try:
        tag, cryptogram = split_key_field(field)
        scheme = tag or {8: "Z", 16: "X", 24: "Y"}[len(cryptogram)]
        return decrypt_under_key(zmk, cryptogram, scheme)
    except KeyRejected as exc:
        raise HostError(exc.code, exc.message) from None


def _lmk_key_type(code: str) -> KeyType:
    try:
        return key_type(code)
    except KeyRejected as exc:
        raise HostError(exc.code, exc.message) from None


def _length_for_scheme(scheme: str) -> int:
    return {"Z": 8, "U": 16, "X": 16, "T": 24, "Y": 24}[scheme]


def cmd_a0(vault: KeyVault, r: FieldReader) -> str:
    """A0: generate a key. Request: mode (0 = generate, 1 = also export under ZMK/TMK), key type (3),
    key scheme LMK (1), [mode 1: [';' ZMK/TMK flag (1)], ZMK/TMK, key scheme ZMK (1)].
    Response: key under LMK, [key under ZMK/TMK], check value (6H)."""
    mode = r.take(1, "mode")
    if mode not in ("0", "1"):
        raise HostError("15", "mode must be 0 or 1")
    kt = _lmk_key_type(r.take(3, "key type"))
    scheme = _scheme_letter(r.take(1, "key scheme (LMK)"), "LMK")
    clear = random_key(_length_for_scheme(scheme))
    under_lmk = vault.wrap(clear, kt, scheme)
    under_zmk = ""
    if mode == "1":
        flag = r.take(1, "ZMK/TMK flag") if r.optional(";") else "0"
        zmk = _zmk_or_tmk(vault, r.key("ZMK/TMK"), flag)
        under_zmk = _encrypt_under_zmk(zmk, clear, _scheme_letter(r.take(1, "key scheme (ZMK)"), "ZMK"))
    return under_lmk + under_zmk + kcv_tdes(clear, 6)


def cmd_a4(vault: KeyVault, r: FieldReader) -> str:
    """A4: form a key from components. Request: number of components (1N, 2-9), key type (3), key scheme
    LMK (1), the components (each encrypted under the LMK as that key type). Response: key under LMK,
    check value (6H). The combined key is forced to odd parity (XOR of an even number of odd-parity
    components has even parity); components must have odd parity (error 10)."""
    count = r.number(1, "number of components")
    if not 2 <= count <= 9:
        raise HostError("03", "number of components must be 2 to 9")
    kt = _lmk_key_type(r.take(3, "key type"))
    scheme = _scheme_letter(r.take(1, "key scheme (LMK)"), "LMK")
    length = _length_for_scheme(scheme)
    combined = bytes(length)
    for number in range(1, count + 1):
        component = _unwrap(vault, r.key(f"component {number}", bare_hex=2 * length), kt, "10")
        if len(component) != length:
            raise HostError("27", "component length does not match the key scheme")
        combined = bytes(a ^ b for a, b in zip(combined, component, strict=True))
    combined = with_odd_parity(combined)
    return vault.wrap(combined, kt, scheme) + kcv_tdes(combined, 6)


def _store_imported(vault: KeyVault, clear: bytes, kt: KeyType, scheme: str, kcv: str) -> str:
    """A6/FA output: the key under the LMK and its check value, odd parity forced on the stored key.

    payShield imports a key with wrong parity, forces odd parity on it and answers 01 ("advice only")
    with the fields still present. DES ignores parity bits, so the corrected key is the same key (same
    check value) and, unlike the uncorrected one, passes the parity check wherever it is used later.
    """
    data = vault.wrap(with_odd_parity(clear), kt, scheme) + kcv
    if not has_odd_parity(clear):
        raise HostError("01", "imported key parity error (advice)", data)
    return data


def cmd_a6(vault: KeyVault, r: FieldReader) -> str:
    """A6: import a key from under a ZMK. Request: key type (3), ZMK, key (under ZMK), key scheme LMK (1).
    Response: key under LMK, check value (6H). Error 01 (advice) with the same data, parity corrected,
    when the imported key has the wrong parity."""
    kt = _lmk_key_type(r.take(3, "key type"))
    zmk = _unwrap(vault, r.key("ZMK"), ZMK, "10")
    clear = _decrypt_under_zmk(zmk, r.key("key"))
    scheme = _scheme_letter(r.take(1, "key scheme (LMK)"), "LMK")
    if _length_for_scheme(scheme) != len(clear):
        raise HostError("27", "key scheme does not match the key length")
    return _store_imported(vault, clear, kt, scheme, kcv_tdes(clear, 6))


def cmd_a8(vault: KeyVault, r: FieldReader) -> str:
    """A8: export a key under a ZMK. Request: key type (3), ZMK, key (under LMK), key scheme ZMK (1).
    Response: key under ZMK, check value (6H)."""
    kt = _lmk_key_type(r.take(3, "key type"))
    zmk = _unwrap(vault, r.key("ZMK"), ZMK, "10")
    clear = _unwrap(vault, r.key("key"), kt, "11")
    scheme = _scheme_letter(r.take(1, "key scheme (ZMK)"), "ZMK")
    if _length_for_scheme(scheme) != len(clear):
        raise HostError("27", "key scheme does not match the key length")
    return _encrypt_under_zmk(zmk, clear, scheme) + kcv_tdes(clear, 6)


def cmd_bu(vault: KeyVault, r: FieldReader) -> str:
    """BU: key check value. Request: key type code (2; FF = use the 3-character type after ';'), key length
    flag (1: 0 single, 1 double, 2 triple), key, [';' key type (3)], [';' '0' '0' KCV type (0 = 16H,
    1 = 6H)]. Response: check value."""
    code = r.hex(2, "key type code")
    length_flag = r.take(1, "key length flag")
    if length_flag not in ("0", "1", "2"):
        raise HostError("15", "key length flag must be 0, 1 or 2")
    field = r.key("key", bare_hex=(16, 32, 48)[int(length_flag)])
    kcv_type = "0"
    if code == "FF":
        if not r.optional(";"):
            raise HostError("15", "key type code FF needs ';' and a key type")
        kt = _lmk_key_type(r.take(3, "key type"))
    elif code in _BU_KEY_TYPE_CODES:
        kt = _lmk_key_type("0" + code)
    else:
        raise HostError("04", "invalid key type code")
    if r.optional(";"):
        r.take(2, "reserved")
        kcv_type = r.take(1, "KCV type")
    try:
        key = vault.unwrap(field, kt)
    except KeyRejected as exc:
        raise HostError(exc.code, exc.message) from None
    if len(key.clear) != (8, 16, 24)[int(length_flag)]:
        raise HostError("27", "key length does not match the key length flag")
    if not key.parity_ok:
        raise HostError("10", "key parity error")
    return _kcv(key.clear, kcv_type)


def _key_scheme_options(r: FieldReader) -> tuple[str, str, str]:
    """The optional ';' key scheme ZMK, key scheme LMK, KCV type of FA/GC ("" when absent)."""
    if not r.optional(";"):
        return "", "", "0"
    zmk_scheme = r.take(1, "key scheme (ZMK)")
    lmk_scheme = r.take(1, "key scheme (LMK)")
    kcv_type = r.take(1, "KCV type") if not r.at_end() else "0"
    return zmk_scheme, lmk_scheme, kcv_type


def cmd_fa(vault: KeyVault, r: FieldReader) -> str:
    """FA: translate a ZPK from ZMK to LMK. Request: ZMK, ZPK (under ZMK), [';' key scheme ZMK, key scheme
    LMK, KCV type]. Response: ZPK under LMK, check value (16H, or 6H for KCV type 1). Error 01 (advice)
    with the same data, parity corrected, when the ZPK has the wrong parity; 11 for an all-zero ZPK."""
    zmk = _unwrap(vault, r.key("ZMK"), ZMK, "10")
    clear = _decrypt_under_zmk(zmk, r.key("ZPK"))
    _, lmk_scheme, kcv_type = _key_scheme_options(r)
    scheme = _scheme_letter(lmk_scheme, "LMK") if lmk_scheme else {8: "Z", 16: "U", 24: "T"}[len(clear)]
    if _length_for_scheme(scheme) != len(clear):
        raise HostError("27", "key scheme does not match the key length")
    if not any(clear):
        raise HostError("11", "all-zero ZPK")
    return _store_imported(vault, clear, ZPK, scheme, _kcv(clear, kcv_type))


def cmd_gc(vault: KeyVault, r: FieldReader) -> str:
    """GC: translate a ZPK from LMK to ZMK. Request: ZMK, ZPK (under LMK), [';' key scheme ZMK, key scheme
    LMK, KCV type]. Response: ZPK under ZMK, check value (16H, or 6H for KCV type 1)."""
    zmk = _unwrap(vault, r.key("ZMK"), ZMK, "10")
    clear = _unwrap(vault, r.key("ZPK"), ZPK, "11")
    zmk_scheme, _, kcv_type = _key_scheme_options(r)
    scheme = _scheme_letter(zmk_scheme, "ZMK") if zmk_scheme else {8: "Z", 16: "X", 24: "Y"}[len(clear)]
    if _length_for_scheme(scheme) != len(clear):
        raise HostError("27", "key scheme does not match the key length")
    return _encrypt_under_zmk(zmk, clear, scheme) + _kcv(clear, kcv_type)


# --- PIN translation ------------------------------------------------------------------------------------


def _ksn(r: FieldReader) -> bytes:
    """KSN descriptor (3H) and KSN as 10 bytes. The descriptor XYZ gives the lengths of the BDK ID (X), the
    sub-key ID (Y) and the device ID (Z); a 5-digit transaction counter follows them. A KSN shorter than
    20 digits is left-padded with F, as X9.24-1 pads it with 1 bits."""
    descriptor = r.hex(3, "KSN descriptor")
    ksn_digits = sum(int(c, 16) for c in descriptor) + 5
    if not 12 <= ksn_digits <= 20:
        raise HostError("15", "KSN descriptor gives a KSN outside 12-20 digits")
    return bytes.fromhex(r.hex(ksn_digits, "KSN").rjust(20, "F"))


def _translate(vault: KeyVault, r: FieldReader, src_type: KeyType) -> str:
    src_field = r.key("source key")
    dst_field = r.key("destination ZPK")
    pin_length_max = r.number(2, "maximum PIN length")
    block = _pin_block(r)
    src_fmt_code = r.take(2, "source PIN block format")
    dst_fmt_code = r.take(2, "destination PIN block format")
    account = r.digits(12, "account number")
    src_fmt = _pin_format(src_fmt_code)
    dst_fmt = _pin_format(dst_fmt_code)
    src_key = _unwrap(vault, src_field, src_type, "10")
    dst_key = _unwrap(vault, dst_field, ZPK, "11")
    pan = _pan(account)
    pin = pinblock.decrypt_pin_block(block, pan, src_fmt, src_key)
    if len(pin) > pin_length_max:
        raise HostError("24", "PIN longer than the maximum PIN length")
    out = pinblock.encrypt_pin_block(pin, pan, dst_fmt, dst_key)
    return f"{len(pin):02d}{out.hex().upper()}{dst_fmt_code}"


def cmd_ca(vault: KeyVault, r: FieldReader) -> str:
    """CA: translate a PIN block from TPK to ZPK. Request: TPK, ZPK, maximum PIN length (2), PIN block
    (16H), source format (2), destination format (2), account (12N). Response: PIN length (2), PIN block
    (16H), destination format (2)."""
    return _translate(vault, r, TPK)


def cmd_cc(vault: KeyVault, r: FieldReader) -> str:
    """CC: translate a PIN block from ZPK to ZPK. Layout as CA with a source ZPK."""
    return _translate(vault, r, ZPK)


def cmd_ci(vault: KeyVault, r: FieldReader) -> str:
    """CI: translate a PIN block from DUKPT (TDES BDK) to ZPK. Request: BDK, ZPK, KSN descriptor (3H), KSN
    (12-20H, length given by the descriptor), PIN block (16H, ISO format 0), destination format (2),
    account (12N). Response: PIN length (2), PIN block (16H), destination format (2).

    The PIN key is X9.24-1:2009 TDES DUKPT (double length). payShield's own CI derives the single-length
    key of pre-2002 DUKPT and leaves TDES DUKPT to G0; G0 is not implemented here."""
    bdk_field = r.key("BDK", bare_hex=32)
    zpk_field = r.key("ZPK")
    ksn = _ksn(r)
    block = _pin_block(r)
    dst_fmt_code = r.take(2, "destination PIN block format")
    account = r.digits(12, "account number")
    dst_fmt = _pin_format(dst_fmt_code)
    bdk = _double(_unwrap(vault, bdk_field, BDK, "10"), "BDK")
    zpk = _unwrap(vault, zpk_field, ZPK, "11")
    pin_key = dukpt.tdes_pin_key(dukpt.tdes_ipek(bdk, ksn), ksn)
    pan = _pan(account)
    pin = pinblock.decrypt_pin_block(block, pan, 0, pin_key)
    out = pinblock.encrypt_pin_block(pin, pan, dst_fmt, zpk)
    return f"{len(pin):02d}{out.hex().upper()}{dst_fmt_code}"


# --- PIN under LMK --------------------------------------------------------------------------------------


def cmd_je(vault: KeyVault, r: FieldReader) -> str:
    """JE: translate a PIN block from ZPK to LMK. Request: ZPK, PIN block (16H), format (2), account (12N).
    Response: PIN under LMK (PIN length + 1 digits)."""
    return _pin_block_to_lmk(vault, r, "ZPK", ZPK)


def _pin_block_to_lmk(vault: KeyVault, r: FieldReader, key_name: str, kt: KeyType) -> str:
    """JC/JE body: key, PIN block (16H), format (2), account (12N) -> PIN under LMK (length + 1 digits)."""
    key_field = r.key(key_name)
    block = _pin_block(r)
    fmt = _pin_format(r.take(2, "PIN block format"))
    account = r.digits(12, "account number")
    key = _unwrap(vault, key_field, kt, "10")
    pin = pinblock.decrypt_pin_block(block, _pan(account), fmt, key)
    return encrypt_pin_under_lmk(vault.pin_lmk_key, pin, account)


def cmd_jc(vault: KeyVault, r: FieldReader) -> str:
    """JC: translate a PIN block from TPK to LMK (a terminal's new PIN, for PVV or offset generation).
    Request: TPK, PIN block (16H), format (2), account (12N). Response: PIN under LMK (PIN length + 1 digits)."""
    return _pin_block_to_lmk(vault, r, "TPK", TPK)


def cmd_jg(vault: KeyVault, r: FieldReader) -> str:
    """JG: translate a PIN from LMK to ZPK. Request: ZPK, format (2), account (12N), PIN under LMK.
    Response: PIN block (16H)."""
    zpk_field = r.key("ZPK")
    fmt = _pin_format(r.take(2, "PIN block format"))
    account = r.digits(12, "account number")
    pin = decrypt_pin_from_lmk(vault.pin_lmk_key, r.rest(), account)
    zpk = _unwrap(vault, zpk_field, ZPK, "10")
    return pinblock.encrypt_pin_block(pin, _pan(account), fmt, zpk).hex().upper()


def cmd_de(vault: KeyVault, r: FieldReader) -> str:
    """DE: generate an IBM PIN offset from a PIN under LMK. Request: PVK, PIN under LMK, check length (2),
    account (12N), decimalisation table (16N), PIN validation data (12). Response: offset (12, F-padded)."""
    pvk_field = r.key("PVK")
    encrypted_pin = r.before_tail(2 + 12 + 16 + 12, "PIN")
    check_length = _check_length(r.number(2, "check length"))
    account = r.digits(12, "account number")
    table = r.take(16, "decimalisation table")
    validation = _validation_data(r.take(12, "PIN validation data"), account)
    pvk = _unwrap(vault, pvk_field, PVK, "10")
    pin = decrypt_pin_from_lmk(vault.pin_lmk_key, encrypted_pin, account)
    offset = pinverify.ibm3624_offset(pvk, validation, pin, table, check_length)
    return offset.ljust(12, "F")


def cmd_dg(vault: KeyVault, r: FieldReader) -> str:
    """DG: generate a Visa PVV from a PIN under LMK. Request: PVK pair, PIN under LMK, account (12N),
    PVKI (1N). Response: PVV (4N)."""
    pvk_field = r.key("PVK pair", bare_hex=32)
    encrypted_pin = r.before_tail(12 + 1, "PIN")
    account = r.digits(12, "account number")
    pvki = r.number(1, "PVKI")
    pvk = _double(_unwrap(vault, pvk_field, PVK, "10"), "PVK pair")
    pin = decrypt_pin_from_lmk(vault.pin_lmk_key, encrypted_pin, account)
    return pinverify.visa_pvv(pvk, _pan(account), pvki, pin)


# --- PIN verification -----------------------------------------------------------------------------------


def _verify_ibm(vault: KeyVault, r: FieldReader, pin_key_type: KeyType) -> str:
    pin_key_field = r.key("PIN key")
    pvk_field = r.key("PVK")
    pin_length_max = r.number(2, "maximum PIN length")
    block = _pin_block(r)
    fmt = _pin_format(r.take(2, "PIN block format"))
    check_length = _check_length(r.number(2, "check length"))
    account = r.digits(12, "account number")
    table = r.take(16, "decimalisation table")
    validation = _validation_data(r.take(12, "PIN validation data"), account)
    offset = _offset(r.take(12, "offset"))
    pin_key = _unwrap(vault, pin_key_field, pin_key_type, "10")
    pvk = _unwrap(vault, pvk_field, PVK, "11")
    pin = pinblock.decrypt_pin_block(block, _pan(account), fmt, pin_key)
    if len(pin) > pin_length_max:
        raise HostError("24", "PIN longer than the maximum PIN length")
    if len(pin) < check_length:
        raise HostError("01", "PIN verification failure")  # fewer digits than are checked (as GO)
    if not pinverify.ibm3624_verify(pvk, validation, pin, offset, table, check_length):
        raise HostError("01", "PIN verification failure")
    return ""


def _verify_pvv(vault: KeyVault, r: FieldReader, pin_key_type: KeyType) -> str:
    pin_key_field = r.key("PIN key")
    pvk_field = r.key("PVK pair", bare_hex=32)
    block = _pin_block(r)
    fmt = _pin_format(r.take(2, "PIN block format"))
    account = r.digits(12, "account number")
    pvki = r.number(1, "PVKI")
    pvv = r.digits(4, "PVV")
    pin_key = _unwrap(vault, pin_key_field, pin_key_type, "10")
    pvk = _double(_unwrap(vault, pvk_field, PVK, "11"), "PVK pair")
    pan = _pan(account)
    pin = pinblock.decrypt_pin_block(block, pan, fmt, pin_key)
    if not pinverify.visa_pvv_verify(pvk, pan, pvki, pin, pvv):
        raise HostError("01", "PIN verification failure")
    return ""


# DUKPT PIN blocks: formats that bind the PIN to the account (X9.8); the reference also lists 04 (Plus),
# which this HSM does not implement.
_DUKPT_PIN_FORMATS = frozenset({"01", "05", "47"})


def _dukpt_head(
    vault: KeyVault, r: FieldReader, pvk_what: str, pvk_bare_hex: int
) -> tuple[str, bytes, str, int]:
    """GO/GQ fields up to the PIN block format: returns (PVK field, DUKPT PIN key, block, format)."""
    if r.take(1, "mode") != "0":
        # Mode 1 (PIN and DUKPT MAC verification) is not implemented.
        raise HostError("15", "only mode 0 (verify the PIN only) is supported")
    bdk_field = r.key("BDK", bare_hex=32)
    pvk_field = r.key(pvk_what, bare_hex=pvk_bare_hex)
    ksn = _ksn(r)
    block_hex = r.hex(16, "PIN block")
    fmt_code = r.take(2, "PIN block format")
    if fmt_code not in _DUKPT_PIN_FORMATS:
        raise HostError("23", "invalid PIN block format code for a DUKPT PIN block")
    bdk = _double(_unwrap(vault, bdk_field, BDK, "10"), "BDK")
    pin_key = dukpt.tdes_pin_key(dukpt.tdes_ipek(bdk, ksn), ksn)
    return pvk_field, pin_key, block_hex, _pin_format(fmt_code)


def cmd_go(vault: KeyVault, r: FieldReader) -> str:
    """GO: verify a DUKPT PIN (TDES DUKPT, X9.24-1:2009 PIN variant) by IBM offset. Request: mode (1N, 0 =
    verify the PIN only), BDK, PVK, KSN descriptor (3H), KSN (12-20H, as CI), PIN block (16H), format (2N:
    01, 05, 47), check length (2N), account (12N), decimalisation table (16N), PIN validation data (12),
    offset (12). Response: none (00 verified, 01 failed)."""
    pvk_field, pin_key, block_hex, fmt = _dukpt_head(vault, r, "PVK", 16)
    check_length = _check_length(r.number(2, "check length"))
    account = r.digits(12, "account number")
    table = r.take(16, "decimalisation table")
    validation = _validation_data(r.take(12, "PIN validation data"), account)
    offset = _offset(r.take(12, "offset"))
    pvk = _unwrap(vault, pvk_field, PVK, "11")
    pin = pinblock.decrypt_pin_block(bytes.fromhex(block_hex), _pan(account), fmt, pin_key)
    if len(pin) < check_length:
        raise HostError("01", "PIN verification failure")  # fewer digits than are checked: cannot match
    if not pinverify.ibm3624_verify(pvk, validation, pin, offset, table, check_length):
        raise HostError("01", "PIN verification failure")
    return ""


def cmd_gq(vault: KeyVault, r: FieldReader) -> str:
    """GQ: verify a DUKPT PIN (TDES DUKPT) by Visa PVV. Request: mode (1N, 0 = verify the PIN only), BDK,
    PVK pair, KSN descriptor (3H), KSN (12-20H, as CI), PIN block (16H), format (2N: 01, 05, 47), account
    (12N), PVKI (1N), PVV (4N). Response: none (00 verified, 01 failed)."""
    pvk_field, pin_key, block_hex, fmt = _dukpt_head(vault, r, "PVK pair", 32)
    account = r.digits(12, "account number")
    pvki = r.number(1, "PVKI")
    pvv = r.digits(4, "PVV")
    pvk = _double(_unwrap(vault, pvk_field, PVK, "11"), "PVK pair")
    pan = _pan(account)
    pin = pinblock.decrypt_pin_block(bytes.fromhex(block_hex), pan, fmt, pin_key)
    if not pinverify.visa_pvv_verify(pvk, pan, pvki, pin, pvv):
        raise HostError("01", "PIN verification failure")
    return ""


def cmd_da(vault: KeyVault, r: FieldReader) -> str:
    """DA: verify a terminal PIN by IBM offset. Request: TPK, PVK, maximum PIN length (2), PIN block (16H),
    format (2), check length (2), account (12N), decimalisation table (16N), PIN validation data (12),
    offset (12). Response: none (00 verified, 01 failed)."""
    return _verify_ibm(vault, r, TPK)


def cmd_ea(vault: KeyVault, r: FieldReader) -> str:
    """EA: verify an interchange PIN by IBM offset. Layout as DA with a ZPK."""
    return _verify_ibm(vault, r, ZPK)


def cmd_dc(vault: KeyVault, r: FieldReader) -> str:
    """DC: verify a terminal PIN by Visa PVV. Request: TPK, PVK pair, PIN block (16H), format (2), account
    (12N), PVKI (1N), PVV (4N). Response: none (00 verified, 01 failed)."""
    return _verify_pvv(vault, r, TPK)


def cmd_ec(vault: KeyVault, r: FieldReader) -> str:
    """EC: verify an interchange PIN by Visa PVV. Layout as DC with a ZPK."""
    return _verify_pvv(vault, r, ZPK)


# --- card verification values ---------------------------------------------------------------------------


def _card_fields(r: FieldReader) -> tuple[str, str, str]:
    pan = r.until(";", "PAN", 19)
    expiry = r.digits(4, "expiration date")
    service_code = r.digits(3, "service code")
    return pan, expiry, service_code


def cmd_cw(vault: KeyVault, r: FieldReader) -> str:
    """CW: generate a CVV/CVC. Request: CVK pair, PAN (up to 19N), ';', expiration date (4N, YYMM),
    service code (3N). Response: CVV (3N)."""
    cvk_field = r.key("CVK pair", bare_hex=32)
    pan, expiry, service_code = _card_fields(r)
    cvk = _double(_unwrap(vault, cvk_field, CVK, "10"), "CVK pair")
    return cvv.card_verification_value(cvk, pan, expiry, service_code)


def cmd_cy(vault: KeyVault, r: FieldReader) -> str:
    """CY: verify a CVV/CVC. Request: CVK pair, CVV (3N), PAN, ';', expiration date (4N), service code (3N).
    Response: none (00 verified, 01 failed)."""
    cvk_field = r.key("CVK pair", bare_hex=32)
    value = r.digits(3, "CVV")
    pan, expiry, service_code = _card_fields(r)
    cvk = _double(_unwrap(vault, cvk_field, CVK, "10"), "CVK pair")
    if not cvv.verify_card_verification_value(cvk, pan, expiry, service_code, value):
        raise HostError("01", "CVV verification failure")
    return ""


# --- MAC ------------------------------------------------------------------------------------------------


def _mac_request(vault: KeyVault, r: FieldReader) -> tuple[str, int]:
    """Parse the M6/M8 fields up to the message; returns (full 16H MAC, MAC length in hex digits)."""
    mode = r.take(1, "mode flag")
    if mode != "0":
        # Multi-block chaining (modes 1-3) is not implemented: messages must fit in one command.
        raise HostError("02", "only mode 0 (single block message) is supported")
    input_format = r.take(1, "input format flag")
    if input_format not in ("0", "1", "2"):
        raise HostError("03", "input format flag must be 0, 1 or 2")
    mac_size = r.take(1, "MAC size")
    if mac_size not in ("0", "1"):
        raise HostError("15", "MAC size must be 0 (8H) or 1 (16H)")
    algorithm = r.take(1, "MAC algorithm")
    if algorithm not in ("1", "3"):
        raise HostError("04", "MAC algorithm must be 1 or 3")
    padding = r.take(1, "padding method")
    if padding not in ("0", "1", "2"):
        raise HostError("09", "padding method must be 0, 1 or 2")
    kt = _MAC_KEY_TYPES.get(r.take(3, "key type"))
    if kt is None:
        raise HostError("05", "MAC key type must be 003 (TAK) or 008 (ZAK)")
    key = _unwrap(vault, r.key("MAC key"), kt, "10")
    length = int(r.hex(4, "message length"), 16)
    raw = r.take(length, "message")
    if input_format == "1":
        if length % 2:
            raise HostError("06", "hex message has an odd number of digits")
        if not all(c in "0123456789ABCDEFabcdef" for c in raw):
            raise HostError("15", "hex message data is not hexadecimal")
        data = bytes.fromhex(raw)
    else:
        data = raw.encode("latin-1")
    if padding == "0":
        if len(data) % 8 or not data:
            raise HostError("06", "message must be whole 8-byte blocks when padding method is 0")
        padding = "1"  # method 1 adds nothing to whole blocks
    mac_hex = 8 if mac_size == "0" else 16
    full = mac.iso9797_mac(key, data, int(algorithm), int(padding), 8)
    return full.hex().upper(), mac_hex


def cmd_m6(vault: KeyVault, r: FieldReader) -> str:
    """M6: generate a MAC. Request: mode flag (1, 0 only), input format (1: 0 binary, 1 hex, 2 text), MAC
    size (1: 0 = 8H, 1 = 16H), MAC algorithm (1: 1 = ISO 9797-1 alg. 1, 3 = alg. 3), padding method (1: 0
    none, 1 or 2 = ISO 9797-1 method 1/2), key type (3: 003 TAK, 008 ZAK), key, message length (4H),
    message. Response: MAC."""
    full, mac_hex = _mac_request(vault, r)
    return full[:mac_hex]


def cmd_m8(vault: KeyVault, r: FieldReader) -> str:
    """M8: verify a MAC. Request: as M6, then the MAC (8H or 16H). Response: none (00 ok, 01 failed)."""
    full, mac_hex = _mac_request(vault, r)
    given = r.hex(mac_hex, "MAC")
    if not hmac.compare_digest(given, full[:mac_hex]):
        raise HostError("01", "MAC verification failure")
    return ""


# --- data encryption ------------------------------------------------------------------------------------

# M0/M2 key types: a ZEK (zone encryption key, 00A) or a DEK/TEK (00B), both TDES under the LMK.
_DATA_KEY_TYPES = {"00A": ZEK, "00B": _lmk_key_type("00B")}
_DATA_MODES = {"00": "ecb", "01": "cbc"}
_HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")


def _data_request(vault: KeyVault, r: FieldReader) -> tuple[str, str, bytes, bytes, bytes]:
    """Parse M0/M2 up to the end: (mode, output format, clear key, IV, message bytes)."""
    mode = _DATA_MODES.get(r.take(2, "mode flag"))
    if mode is None:
        # CFB8 (02) and CFB64 (03) are not implemented.
        raise HostError("02", "mode flag must be 00 (ECB) or 01 (CBC)")
    input_format = r.take(1, "input format flag")
    if input_format not in ("0", "1"):
        raise HostError("03", "input format flag must be 0 (binary) or 1 (hex)")
    output_format = r.take(1, "output format flag")
    if output_format not in ("0", "1"):
        raise HostError("04", "output format flag must be 0 (binary) or 1 (hex)")
    kt = _DATA_KEY_TYPES.get(r.take(3, "key type"))
    if kt is None:
        raise HostError("05", "key type must be 00A (ZEK) or 00B (DEK)")
    key = _unwrap(vault, r.key("key"), kt, "10")
    iv = bytes.fromhex(r.hex(16, "IV")) if mode == "cbc" else b""
    length = int(r.hex(4, "message length"), 16)
    raw = r.take(length, "message")
    # The processor cannot strip a "%00" LMK identifier here (binary data may end in "%nn"), so it is
    # recognised after the message.
    if r.rest() not in ("", "%00"):
        raise HostError("15", "data after the message")
    if input_format == "1":
        if length % 2:
            raise HostError("06", "hex message has an odd number of digits")
        if not set(raw) <= _HEX_DIGITS:
            raise HostError("15", "hex message is not hexadecimal")
        data = bytes.fromhex(raw)
    else:
        data = raw.encode("latin-1")
    if not data or len(data) % 8:
        # The HSM does not pad: the host pads to whole 8-byte blocks and knows how to remove it.
        raise HostError("06", "message must be a non-empty multiple of 8 bytes")
    return mode, output_format, key, iv, data


def _data_response(mode: str, output_format: str, iv_out: bytes, data: bytes) -> str:
    text = data.hex().upper() if output_format == "1" else data.decode("latin-1")
    prefix = iv_out.hex().upper() if mode == "cbc" else ""
    return f"{prefix}{len(text):04X}{text}"


def cmd_m0(vault: KeyVault, r: FieldReader) -> str:
    """M0: encrypt a data block. Request: mode flag (2N: 00 ECB, 01 CBC), input format (1N: 0 binary,
    1 hex), output format (1N: 0 binary, 1 hex), key type (3H: 00A ZEK, 00B DEK), key, [CBC: IV (16H)],
    message length (4H, characters as sent), message (whole 8-byte blocks). Response: [CBC: IV for the
    next block (16H)], message length (4H), encrypted message."""
    mode, output_format, key, iv, data = _data_request(vault, r)
    out = tdes_cbc_encrypt(key, data, iv) if mode == "cbc" else tdes_ecb_encrypt(key, data)
    return _data_response(mode, output_format, out[-8:], out)


def cmd_m2(vault: KeyVault, r: FieldReader) -> str:
    """M2: decrypt a data block. Layout as M0, with the encrypted message in and the clear one out; the
    returned IV is the last cryptogram block (to chain the next call)."""
    mode, output_format, key, iv, data = _data_request(vault, r)
    out = tdes_cbc_decrypt(key, data, iv) if mode == "cbc" else tdes_ecb_decrypt(key, data)
    return _data_response(mode, output_format, data[-8:], out)


COMMANDS: dict[str, Handler] = {
    "NC": cmd_nc,
    "B2": cmd_b2,
    "A0": cmd_a0,
    "A4": cmd_a4,
    "A6": cmd_a6,
    "A8": cmd_a8,
    "BU": cmd_bu,
    "FA": cmd_fa,
    "GC": cmd_gc,
    "CA": cmd_ca,
    "CC": cmd_cc,
    "CI": cmd_ci,
    "JC": cmd_jc,
    "JE": cmd_je,
    "JG": cmd_jg,
    "DE": cmd_de,
    "DG": cmd_dg,
    "DA": cmd_da,
    "EA": cmd_ea,
    "DC": cmd_dc,
    "EC": cmd_ec,
    "GO": cmd_go,
    "GQ": cmd_gq,
    "CW": cmd_cw,
    "CY": cmd_cy,
    "M6": cmd_m6,
    "M8": cmd_m8,
    "M0": cmd_m0,
    "M2": cmd_m2,
}
