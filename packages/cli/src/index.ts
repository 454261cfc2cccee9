// @eraftkv/cli (see package.json for what it is).
export const packageName = '@eraftkv/cli';
