// @eraftkv/kv-server (see package.json for what it is).
export const packageName = '@eraftkv/kv-server';
