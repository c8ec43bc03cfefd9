/**
 * ISO 4217 currencies and their minor-unit exponents (fraction digits).
 *
 * Codes whose minor unit is "N.A." in ISO 4217 (precious metals, XDR, XSU,
 * XUA, testing codes) are left out: they have no minor unit, so an exact
 * integer ledger cannot hold them.
 *
 * A few codes withdrawn recently (ANG, CUC, HRK, SLL, ZWL) are kept: an account
 * opened in one of them must still be able to withdraw and close, and the
 * decider reads the digits of the account's currency for every movement.
 */

// Grouped by exponent so a change to the ISO list is a one-word edit.
const ZERO =
  'BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF';
const THREE = 'BHD IQD JOD KWD LYD OMR TND';
const FOUR = 'CLF UYW';
const TWO =
  'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL ' +
  'BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK ' +
  'DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HRK HTG ' +
  'HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL ' +
  'MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD ' +
  'PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL ' +
  'SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU ' +
  'UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL';

// A Map, not an object literal: codes come from untrusted input, and
// "__proto__" or "toString" must not resolve to anything.
const DIGITS = new Map<string, number>();
for (const [list, digits] of [
  [ZERO, 0],
  [TWO, 2],
  [THREE, 3],
  [FOUR, 4],
] as const) {
  for (const code of list.split(' ')) DIGITS.set(code, digits);
}

/** Fraction digits of an ISO 4217 code, or undefined for an unknown code. */
export function fractionDigits(code: string): number | undefined {
  return DIGITS.get(code);
}

/** Every known code, sorted; for docs and tests. */
export function currencyCodes(): string[] {
  return [...DIGITS.keys()].sort();
}
