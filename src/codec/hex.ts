// Hex digit value by char code, -1 for anything else (UUID parsing in the decoder and the COPY writer).
const HEX = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[65 + c] = 10 + c;
  HEX[97 + c] = 10 + c;
}

/** The value of the hex digit with this char code, or -1. */
export function hexValue(charCode: number): number {
  return charCode < 128 ? HEX[charCode] : -1;
}

/** 1 for the char codes of lower-case hex digits. */
const LOWER_HEX = new Uint8Array(256);
for (const c of '0123456789abcdef') LOWER_HEX[c.charCodeAt(0)] = 1;

/** Whether bytes [s, e) spell a canonical lower-case UUID (8-4-4-4-12 hex digits). */
export function isLowerUuidAt(b: Uint8Array, s: number, e: number): boolean {
  const HYPHEN = 0x2d;
  if (e - s !== 36 || b[s + 8] !== HYPHEN || b[s + 13] !== HYPHEN || b[s + 18] !== HYPHEN || b[s + 23] !== HYPHEN) return false;
  let ok = 1;
  for (let i = s; i < s + 8; i++) ok &= LOWER_HEX[b[i]];
  for (let i = s + 9; i < s + 13; i++) ok &= LOWER_HEX[b[i]];
  for (let i = s + 14; i < s + 18; i++) ok &= LOWER_HEX[b[i]];
  for (let i = s + 19; i < s + 23; i++) ok &= LOWER_HEX[b[i]];
  for (let i = s + 24; i < e; i++) ok &= LOWER_HEX[b[i]];
  return ok === 1;
}
