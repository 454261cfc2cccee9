// @eraftkv/meta-server (see package.json for what it is).
export const packageName = '@eraftkv/meta-server';
