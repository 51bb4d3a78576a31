// Small progressive enhancements; every form works without this file. Nothing here acts
// for the reader: link scanners run scripts too, and only a person may confirm or vote.
(function () {
  "use strict";
  // Move focus to the error summary so keyboard and screen-reader users hear it first.
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // Preselect the reader's time zone from the browser (the Intl API).
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  document.querySelectorAll("select[data-detect-timezone]").forEach(function (select) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        return;
      }
    }
  });
})();
