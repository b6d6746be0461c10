/** A message with every field optional, at any depth (what the generated fromPartial takes). */
type Builtin = Date | ((...args: never[]) => unknown) | Uint8Array | string | number | boolean | bigint | undefined;

export type DeepPartial<T> = T extends bigint
  ? string | number | bigint
  : T extends Builtin
    ? T
    : T extends globalThis.Array<infer U>
      ? globalThis.Array<DeepPartial<U>>
      : T extends ReadonlyArray<infer U>
        ? ReadonlyArray<DeepPartial<U>>
        : T extends object
          ? { [K in keyof T]?: DeepPartial<T[K]> }
          : Partial<T>;
