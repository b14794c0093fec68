// sglprof pages: sorting, filtering and paging of tables, zoom of
// flamegraphs, and the copy button. The page is complete without it.
(function () {
  'use strict';
  var STEP = 500;

  function plain(html) {
    return html.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
  }

  function number(text) {
    var t = text.replace(/[,%$\s]/g, '');
    return t === '' ? NaN : Number(t);
  }

  function blank(text) {
    return text === '' || text === 'n/a' || text === '-';
  }

  function group(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function setupTable(box) {
    var table = box.querySelector('table.data');
    var tbody = table.tBodies[0];
    var rest = box.querySelector('noscript');
    var limit = Number(box.getAttribute('data-limit'));
    var total = Number(box.getAttribute('data-rows'));
    var status = box.querySelector('.status');
    var filter = box.querySelector('input[type=search]');
    var more = box.querySelector('button.more');
    var all = box.querySelector('button.all');
    var rows = null;
    var view = null;
    var shown = limit;
    var query = '';

    // Rows are read on first use: the first ones from the table, the rest
    // from the <noscript> text, which the browser did not parse.
    function load() {
      if (rows) {
        return;
      }
      var html = [];
      for (var i = 0; i < tbody.rows.length; i++) {
        html.push(tbody.rows[i].innerHTML.replace(/<\/td>/g, ''));
      }
      if (rest) {
        var text = rest.textContent;
        var body = text.slice(text.indexOf('<tbody>') + 7, text.lastIndexOf('</tbody>'));
        body.split('<tr>').forEach(function (row) {
          row = row.trim();
          if (row) {
            html.push(row);
          }
        });
      }
      rows = html.map(function (row) {
        var cells = row.split('<td').slice(1).map(function (cell) {
          return plain('<td' + cell).trim();
        });
        return { html: row, cells: cells, text: cells.join(' ').toLowerCase() };
      });
      view = rows;
    }

    function render() {
      var count = view ? view.length : total;
      if (view) {
        var parts = [];
        var end = Math.min(shown, view.length);
        for (var i = 0; i < end; i++) {
          parts.push('<tr>' + view[i].html);
        }
        tbody.innerHTML = parts.join('');
      }
      var on = Math.min(shown, count);
      var words = 'Showing ' + group(on) + ' of ' + group(count) + ' rows';
      if (query) {
        words += ' matching (' + group(total) + ' in all)';
      }
      if (status) {
        status.textContent = words;
      }
      if (more) {
        more.hidden = on >= count;
        more.textContent = 'Show ' + group(Math.min(STEP, count - on)) + ' more';
      }
      if (all) {
        all.hidden = on >= count;
      }
    }

    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.setAttribute('title', 'Sort by ' + th.textContent.trim());
      th.addEventListener('click', function () {
        load();
        var numeric = rows.every(function (r) {
          var v = r.cells[col] || '';
          return blank(v) || !isNaN(number(v));
        });
        var current = th.getAttribute('aria-sort');
        var descending = current ? current === 'ascending' : numeric;
        var key = function (r) {
          var v = r.cells[col] || '';
          if (numeric) {
            return blank(v) ? -Infinity : number(v);
          }
          return v.toLowerCase();
        };
        var keyed = rows.map(function (r, i) { return [key(r), i, r]; });
        keyed.sort(function (a, b) {
          var c = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
          return (descending ? -c : c) || a[1] - b[1];
        });
        rows = keyed.map(function (k) { return k[2]; });
        Array.prototype.forEach.call(heads, function (other) {
          other.removeAttribute('aria-sort');
        });
        th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
        apply();
      });
    });

    function apply() {
      view = query ? rows.filter(function (r) { return r.text.indexOf(query) >= 0; }) : rows;
      render();
    }

    if (filter) {
      filter.addEventListener('input', function () {
        load();
        query = filter.value.trim().toLowerCase();
        shown = limit;
        apply();
      });
    }
    if (more) {
      more.addEventListener('click', function () {
        load();
        shown += STEP;
        render();
      });
    }
    if (all) {
      all.addEventListener('click', function () {
        load();
        shown = Infinity;
        render();
      });
    }
    render();
  }

  function setupFlame(figure) {
    var svg = figure.querySelector('svg.flamegraph');
    var reset = figure.querySelector('button.reset');
    if (!svg) {
      return;
    }
    var width = svg.viewBox.baseVal.width;
    var boxes = svg.querySelector('g.boxes');
    var total = Number(boxes.getAttribute('data-total'));
    var groups = Array.prototype.slice.call(boxes.querySelectorAll('g[data-w]'));

    function zoom(x0, w, d0) {
      groups.forEach(function (g) {
        var x = Number(g.getAttribute('data-x'));
        var gw = Number(g.getAttribute('data-w'));
        var d = Number(g.getAttribute('data-d'));
        if (x + gw <= x0 || x >= x0 + w) {
          g.style.display = 'none';
          return;
        }
        g.style.display = '';
        var left = Math.max(0, (x - x0) / w * width);
        var right = Math.min(width, (x + gw - x0) / w * width);
        var rect = g.querySelector('rect');
        var text = g.querySelector('text');
        rect.setAttribute('x', left.toFixed(2));
        rect.setAttribute('width', (right - left).toFixed(2));
        text.setAttribute('x', (left + 3).toFixed(2));
        var name = g.querySelector('title').textContent.split('\n')[0];
        var chars = Math.floor((right - left - 6) / 7);
        text.textContent = chars < 3 ? '' : name.length > chars ? name.slice(0, chars - 1) + '\u2026' : name;
        g.classList.toggle('dim', d < d0);
      });
      if (reset) {
        reset.hidden = w >= total;
      }
    }

    svg.addEventListener('click', function (event) {
      var g = event.target.closest('g[data-w]');
      if (g) {
        zoom(Number(g.getAttribute('data-x')), Number(g.getAttribute('data-w')), Number(g.getAttribute('data-d')));
      }
    });
    if (reset) {
      reset.addEventListener('click', function () { zoom(0, total, 0); });
    }
  }

  function setupCopy(button) {
    button.addEventListener('click', function () {
      var text = document.getElementById(button.getAttribute('data-copy')).textContent;
      var done = function () {
        button.textContent = 'Copied';
        setTimeout(function () { button.textContent = 'Copy'; }, 1500);
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () {});
      }
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll('div.table'), setupTable);
  Array.prototype.forEach.call(document.querySelectorAll('div.flame'), setupFlame);
  Array.prototype.forEach.call(document.querySelectorAll('button.copy'), setupCopy);
})();
