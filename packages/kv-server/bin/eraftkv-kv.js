#!/usr/bin/env node
'use strict';
// The eraftkv-kv binary; the code lives in ../dist/bin/eraftkv-kv.js (built by `npm run build`).
require('../dist/bin/eraftkv-kv.js');
