#!/usr/bin/env node
'use strict';
// The eraftkv-meta binary; the code lives in ../dist/bin/eraftkv-meta.js (built by `npm run build`).
require('../dist/bin/eraftkv-meta.js');
