#!/usr/bin/env node
'use strict';
// The eraftkv-ctl binary; the code lives in ../dist/bin/eraftkv-ctl.js (built by `npm run build`).
require('../dist/bin/eraftkv-ctl.js');
