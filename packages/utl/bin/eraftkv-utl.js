#!/usr/bin/env node
'use strict';
// The eraftkv-utl binary; the code lives in ../dist/bin/eraftkv-utl.js (built by `npm run build`).
require('../dist/bin/eraftkv-utl.js');
