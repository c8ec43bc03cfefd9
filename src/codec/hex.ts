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
