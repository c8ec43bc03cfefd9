// The pure banking domain: money, currencies, commands, events and the decider.
export * from './types';
export { fractionDigits, currencyCodes } from './currency';
export { parseMoney, formatMoney, addMinor, parseMinor, type MoneyError } from './money';
export { decide, evolve, stateFromLatestEvent } from './decider';
